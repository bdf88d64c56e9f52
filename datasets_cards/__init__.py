"""Jinja2 templates of Hugging Face dataset cards (shipped as package data)."""
