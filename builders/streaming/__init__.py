"""Streaming execution of curation runs: bounded memory on one machine, the same steps on Ray."""
