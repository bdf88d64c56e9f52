"""Doctor–patient dialogue corpora -> cleaned multi-turn sft records (`medmill build-dialogue`)."""

BUILDER = "dialogue"
BUILDER_VERSION = "1"
