"""build-self-instruct: new medical instruction data grown from seed tasks with an LLM.

seeds.py reads seed files, novelty.py keeps near-copies out, balance.py steers categories,
generate.py runs the request loop, run.py is the whole build.
"""
