"""build-lit-qa: literature conclusions -> grounded QA pairs or patient-doctor dialogues. The builder is
`build.LitQABuilder`."""

BUILDER = "lit-qa"  # the command name without "build-"
BUILDER_VERSION = "1"
