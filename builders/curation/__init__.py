"""Curation: quality rules, PII redaction, safety lexicon, near-duplicate removal, decontamination."""
