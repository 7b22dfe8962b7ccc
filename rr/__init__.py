"""rr: teach small student language models to reason with rationales, in JAX."""
