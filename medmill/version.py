"""The single place the version lives (read by pyproject and by manifests)."""

__version__ = "0.1.0"
