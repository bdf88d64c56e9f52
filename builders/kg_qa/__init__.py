"""build-kg-qa: a medical knowledge graph -> question/answer SFT records (templates, or LLM patient
scenarios grounded in each entity's facts, or a mix). The builder is `build.KGQABuilder`."""

BUILDER = "kg-qa"  # the command name without "build-": manifest builder, source.builder, meta.builder
BUILDER_VERSION = "1"
