"""build-lit-qa: literature conclusions -> grounded QA pairs or patient-doctor dialogues."""
