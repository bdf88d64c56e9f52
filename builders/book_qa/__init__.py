"""build-book-qa: guideline / textbook chunks -> grounded question/answer SFT records. The builder is
`build.BookQABuilder`."""

BUILDER = "book-qa"  # the command name without "build-"
BUILDER_VERSION = "1"
