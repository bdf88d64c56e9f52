"""medmill.trainers: pt / sft / rm / dpo / ppo on trl + transformers + peft, reading medmill dataset dirs.

Trainers never import medmill.builders; they read dataset dirs through medmill.schemas.dataset_dir.
"""
