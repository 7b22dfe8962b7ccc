"""RLP's information-gain reward: what a sampled thought adds to the likelihood of the next tokens."""
