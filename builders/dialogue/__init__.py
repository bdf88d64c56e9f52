"""Doctor–patient dialogue corpora -> cleaned multi-turn sft records (medmill build-dialogue)."""
