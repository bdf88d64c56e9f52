"""Prompt templates as data files (`<id>.yaml`: id, version, system, user). Loaded by
medmill.builders.llm.prompts.load_prompt; this package holds text, not logic."""
