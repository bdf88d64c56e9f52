"""The LLM generation engine shared by every LLM-powered builder."""
