"""Rewards that shape a rationale's form: length (cosine), repetition, skipping the thought on easy questions."""
