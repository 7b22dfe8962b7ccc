"""SFT steps on demonstrations between RL steps: ReLIFT (arXiv 2506.07527) and SASR (arXiv 2505.13026).

SKELETON, being built (issue 14): make_sft_steps returns None unless config.rl.sft_steps != "none".
"""

from __future__ import annotations

from rr.config import ConfigError


def make_sft_steps(config, model, optimizer, shardings, mesh, tokenizer, examples):
  """The GRPO step's SFT-steps part for config.rl.sft_steps, or None for "none"."""
  if config.rl.sft_steps == "none":
    return None
  raise ConfigError(f"config.rl.sft_steps={config.rl.sft_steps!r} is not built yet")
