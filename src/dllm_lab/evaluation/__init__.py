"""Evaluation: decode task prompts, score them, log accuracy / NFE / tokens-per-second."""
