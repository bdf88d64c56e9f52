"""Small dataset dirs written by medmill's own writer and a tiny init-model model, shared by the
trainer tests (session-scoped: built once per test process)."""

from __future__ import annotations

from pathlib import Path

QA = [
    ("头痛怎么办", "多休息，必要时就医。"),
    ("发热吃什么药", "可以服用对乙酰氨基酚退热。"),
    ("咳嗽有痰怎么办", "多喝水，可用化痰药。"),
    ("高血压饮食注意什么", "低盐低脂饮食。"),
]
TEXT = "高血压患者应低盐饮食，规律服用降压药物，定期监测血压。糖尿病的典型症状包括多饮、多食、多尿。"


def build_dirs(root: Path) -> dict[str, Path]:
    from medmill.builders.core.writer import BuildInfo, write_dataset_dir
    from medmill.schemas import Message, PreferenceRecord, PretrainRecord, SFTRecord, Source

    sft, prefs, texts = [], [], []
    for i in range(40):
        q, a = QA[i % len(QA)]
        src = Source(group=f"g{i}", builder="test")
        msgs = [Message(role="user", content=f"{q}？{i}"), Message(role="assistant", content=a)]
        sft.append(SFTRecord(id=SFTRecord.make_id(msgs), messages=msgs, source=src))
        prompt = [Message(role="user", content=f"{q}？{i}")]
        prefs.append(
            PreferenceRecord(
                id=f"p{i}",
                prompt=prompt,
                chosen=[Message(role="assistant", content=a)],
                rejected=[Message(role="assistant", content="不知道，别问我。")],
                source=src,
            )
        )
        texts.append(PretrainRecord(id=f"t{i}", text=TEXT * 2, source=src))
    dirs = {"sft": root / "sft", "pref": root / "pref", "pt": root / "pt"}
    write_dataset_dir(dirs["sft"], sft, [], BuildInfo(kind="sft", builder="test", command="test", val_size=0.1))
    write_dataset_dir(dirs["pref"], prefs, [], BuildInfo(kind="preference", builder="test", command="test", val_size=0.2))
    write_dataset_dir(dirs["pt"], texts, [], BuildInfo(kind="pretrain", builder="test", command="test", val_size=0.1))
    return dirs


def fast_args(steps: int, lr: float = 3e-3, save: int = 1000) -> list[str]:
    return [
        "--max_steps", str(steps), "--learning_rate", str(lr), "--per_device_train_batch_size", "8",
        "--logging_steps", "5", "--save_steps", str(save), "--dataloader_num_workers", "0",
    ]  # fmt: skip
