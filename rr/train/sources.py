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

"sec" is the Self-Evolving Curriculum (arXiv 2505.14970, docs/methods.md "SEC curriculum"): a bandit whose arms are
the train questions' difficulty levels, rewarded by how much learning signal (mean |advantage|) a level gave.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from rr.config import ConfigError
from rr.registry import Registry
from rr.rewards import compute_advantages
from rr.rewards.advantages import ESTIMATORS as GROUP_ESTIMATORS

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

  def metrics(self) -> dict:
    """Scalars for the step's log ("train/..." names); a stateless source has none."""
    return {}


@PROMPT_SOURCES.register("sec")
class SelfEvolvingCurriculum(UniformPrompts):
  """SEC: arms are difficulty levels; p(c) ∝ exp(Q(c) / rl.curriculum_temperature), and after each step every arm
  sampled in it moves Q(c) <- alpha * r(c) + (1 - alpha) * Q(c), r(c) the mean |advantage| of its completions.

  Mean |advantage| is largest where a level is neither always solved nor always failed, so the curriculum
  follows the policy's frontier. The advantages are rl.advantage's group estimator applied on the host to the
  combined rewards of every group sampled in the step (kept by the group filters or not: a dropped group is what
  the level gave); they leave out a reward-side KL penalty. With one level (user data has difficulty 0) p = 1 and
  the draws are uniform, as the "uniform" source's.
  """

  def __init__(self, config, examples: Sequence):
    super().__init__(config, examples)
    rl = config.rl
    if rl.advantage not in GROUP_ESTIMATORS:
      raise ConfigError(f"config.rl.prompt_source='sec' scores difficulty levels by group advantages, which "
                        f"config.rl.advantage={rl.advantage!r} does not compute; use one of {GROUP_ESTIMATORS} "
                        "or another prompt source")
    self.advantage, self.group_size = rl.advantage, rl.group_size
    self.advantage_opts = {"scale": rl.advantage_scale} if rl.advantage == "grpo" else {}
    self.alpha, self.temperature = rl.curriculum_alpha, rl.curriculum_temperature
    level_per_question = np.array([e.difficulty for e in examples])
    self.levels = sorted({int(d) for d in level_per_question})
    self.questions_by_arm = [np.flatnonzero(level_per_question == level) for level in self.levels]
    self.q_A = np.zeros(len(self.levels))

  def probabilities(self) -> np.ndarray:
    """p(c) ∝ exp(Q(c) / temperature) over the arms, in the order of `levels`."""
    logits_A = self.q_A / self.temperature
    p_A = np.exp(logits_A - logits_A.max())
    return p_A / p_A.sum()

  def sample(self, step: int, round_: int, count: int) -> np.ndarray:
    """`count` arms drawn from p with replacement, then for each a question of that level, distinct within the
    round unless a level is drawn more often than it has questions."""
    rng = np.random.default_rng([self.seed, step, round_])
    arms_K = rng.choice(len(self.levels), size=count, p=self.probabilities())
    picked_K = np.empty(count, np.int64)
    for arm, questions in enumerate(self.questions_by_arm):
      slots = np.flatnonzero(arms_K == arm)
      distinct = rng.choice(questions, size=min(len(slots), len(questions)), replace=False)
      repeats = rng.choice(questions, size=len(slots) - len(distinct))
      picked_K[slots] = np.concatenate([distinct, repeats])
    return picked_K

  def update(self, step: int, rollouts) -> None:
    sampled = rollouts.sampled
    advantages_N = np.asarray(compute_advantages(self.advantage, sampled.total_N, self.group_size,
                                                 valid_B=sampled.valid_N, **self.advantage_opts))
    arm_N = np.searchsorted(self.levels, [e.difficulty for e in sampled.examples])
    valid_N = np.asarray(sampled.valid_N, bool)  # rows whose reward failed say nothing about their level
    for arm in np.unique(arm_N[valid_N]):
      rows = valid_N & (arm_N == arm)
      self.q_A[arm] = self.alpha * np.abs(advantages_N[rows]).mean() + (1 - self.alpha) * self.q_A[arm]

  def state_dict(self) -> dict:
    return {"q": {str(level): float(q) for level, q in zip(self.levels, self.q_A)}}

  def load_state_dict(self, state: dict) -> None:
    if not state:  # the checkpoint holds no curriculum (its run used a stateless source): Q stays 0
      return
    saved = sorted(int(level) for level in state["q"])
    if saved != self.levels:
      raise ConfigError(f"the checkpoint's SEC curriculum has difficulty levels {saved} but the train questions "
                        f"have {self.levels}; resume with the config that run used (config.data)")
    self.q_A = np.array([state["q"][str(level)] for level in self.levels])

  def metrics(self) -> dict:
    p_A = self.probabilities()
    return {**{f"train/curriculum/p_level_{level}": float(p) for level, p in zip(self.levels, p_A)},
            **{f"train/curriculum/q_level_{level}": float(q) for level, q in zip(self.levels, self.q_A)}}


def make_prompt_source(config, examples: Sequence):
  """The source config.rl.prompt_source names, built for these train examples."""
  return PROMPT_SOURCES.get(config.rl.prompt_source)(config, examples)
