"""build-pt: texts, literature, dialogues and dataset dirs -> clean pretraining documents
(`{id, text, source, meta}`), curated, token-counted; or a token-share mixture of pretrain dirs."""

BUILDER = "pt"
BUILDER_VERSION = "1"
