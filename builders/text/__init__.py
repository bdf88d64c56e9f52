"""Text utilities every builder shares: normalisation, character n-grams and similarity, CJK share,
meta-talk (one data file), grounding checks, cleaning, sections and chunking. Pure functions over
strings; reading files is the readers' job."""
