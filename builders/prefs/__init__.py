"""Preference pairs for reward models and DPO (`medmill build-prefs`).

Readers turn sft dirs, prompt files and existing preference files into `PromptItem`s; a strategy
(corrupt, judge, reference) turns each item into one validated `PreferenceRecord` or a reject row.
"""
