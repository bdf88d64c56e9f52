"""build-book-qa: guideline / textbook chunks -> grounded question/answer SFT records."""
