"""The one normal form texts are compared in (NFKC full-width -> half-width, no whitespace, lower case).

It is defined in medmill.schemas (record validation compares answers with it) and used from here by
builders, so the rule exists once."""

from __future__ import annotations

from medmill.schemas.records import normalise_for_compare as normalise

__all__ = ["normalise"]
