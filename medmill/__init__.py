"""medmill: medical knowledge -> validated training shards -> trained models."""

from medmill.version import __version__

__all__ = ["__version__"]
