"""build-kg-qa: a medical knowledge graph -> question/answer SFT records (templates, or LLM patient
scenarios grounded in each entity's facts, or a mix)."""
