"""Guide (arXiv 2506.13923, docs/methods.md "Guide"): a group whose rollouts all fail is sampled again with a hint.

SKELETON, being built (issue 14): make_guide returns None unless config.rl.guide.
"""

from __future__ import annotations

from rr.config import ConfigError


def make_guide(config, tokenizer, examples, width: int):
  """The collector's guide part for config.rl.guide, or None when it is off."""
  if not config.rl.guide:
    return None
  raise ConfigError("config.rl.guide is not built yet")
