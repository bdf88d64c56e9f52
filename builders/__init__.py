"""Readers, builders, the LLM engine, curation stages and the shard writer."""
