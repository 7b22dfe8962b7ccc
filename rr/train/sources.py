"""Where each RL step's questions come from: a prompt source, chosen by `config.rl.prompt_source`.

A source picks which train questions a sampling round uses, hears how the step went (`update`), and keeps any
state it learns in the checkpoint (`state_dict` / `load_state_dict`, JSON-able), so a resumed run continues
exactly. Curricula and replay buffers plug in here. A new source is one registered class and one config line:

  @sources.PROMPT_SOURCES.register("first_half")
  class FirstHalf(sources.UniformPrompts):
    def sample(self, step, round_, count):
      rng = np.random.default_rng([self.seed, step, round_])
      return rng.choice(self.num_questions // 2, size=count, replace=False)

  --config.rl.prompt_source=first_half
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from rr.registry import Registry

PROMPT_SOURCES = Registry("prompt source", "config.rl.prompt_source")


@PROMPT_SOURCES.register("uniform")
class UniformPrompts:
  """Questions drawn uniformly without replacement, as a pure function of (seed, step, round): no state."""

  def __init__(self, config, examples: Sequence):
    self.seed, self.num_questions = config.seed, len(examples)
    if config.rl.prompts_per_step > self.num_questions:
      raise ValueError(f"config.rl.prompts_per_step={config.rl.prompts_per_step} exceeds the "
                       f"{self.num_questions} train questions")

  def sample(self, step: int, round_: int, count: int) -> np.ndarray:
    """Indices of `count` distinct train questions for sampling round `round_` of loop step `step`."""
    rng = np.random.default_rng([self.seed, step, round_])
    return rng.choice(self.num_questions, size=count, replace=False)

  def update(self, step: int, rollouts) -> None:
    """Called after each step with its rr.train.collector.Rollouts (the sampled groups and their rewards)."""

  def state_dict(self) -> dict:
    return {}

  def load_state_dict(self, state: dict) -> None:
    pass


def make_prompt_source(config, examples: Sequence):
  """The source config.rl.prompt_source names, built for these train examples."""
  return PROMPT_SOURCES.get(config.rl.prompt_source)(config, examples)
