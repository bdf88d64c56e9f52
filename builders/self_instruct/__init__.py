"""build-self-instruct: new medical instruction data grown from seed tasks with an LLM.

seeds.py reads seed files, novelty.py keeps near-copies out, balance.py steers categories,
generate.py runs the request loop; the builder is `build.SelfInstructBuilder`.
"""

BUILDER = "self-instruct"  # the command name without "build-"
BUILDER_VERSION = "1"
