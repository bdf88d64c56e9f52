"""Readers: sniff a file's content (not its extension) and turn it into typed source records."""
