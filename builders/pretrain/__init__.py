"""build-pt: texts, literature, dialogues and dataset dirs -> clean pretraining documents
(`{id, text, source, meta}`), curated, token-counted, and optionally mixed by token ratios."""
