"""medmill eval and medmill chat: did the data help?

mcq (option log-likelihood or the generated letter), generation (ROUGE-L / BLEU on jieba tokens,
grounding), judge (pairwise win rate through the LLM engine), ppl (domain vs general text), rm (pairwise
accuracy per perturbation). Reads dataset dirs and public benchmark files; imports trainers (loading),
builders.llm (judge), decontamination (overlap) and the report page style, never the other way round.
"""
