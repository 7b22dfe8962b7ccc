"""Prefix-RFT (arXiv 2507.01679, docs/methods.md "Prefix-RFT"): rollouts that continue a demonstration prefix.

SKELETON, being built (issue 14): make_prefixer returns None unless config.rl.prefix_rollouts > 0.
"""

from __future__ import annotations

from rr.config import ConfigError


def make_prefixer(config, tokenizer, examples, width: int):
  """The collector's prefix part for config.rl.prefix_rollouts > 0, or None when it is 0."""
  if not config.rl.prefix_rollouts:
    return None
  raise ConfigError("config.rl.prefix_rollouts is not built yet")
