"""Which sampled groups a step trains on: DAPO's dynamic sampling and balanced difficulty filtering.

docs/methods.md, "Data-side controls". A group is the G completions of one prompt. Dynamic sampling drops groups
whose rewards are all equal (their advantages are zero, so they only dilute the batch) and samples another round
of prompts until the batch is full, at most `rl.max_sampling_rounds` rounds. Difficulty filtering keeps groups
whose pass rate (share of completions the task verifier accepts) lies in [pass_rate_min, pass_rate_max]. When
the rounds run out the batch is topped up with dropped groups, so its shape (and the compiled step) never
changes; `frac_groups_kept` and `sampling_rounds` say how often that happens.

Filters are registered by name (`GROUP_FILTERS`); a filter factory `make(rl) -> keep(groups) -> bool[groups]`.
rl.dynamic_sampling turns on "equal_rewards", a pass-rate band "pass_rate", and rl.group_filters adds any other.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from rr.registry import Registry, split_names

GROUP_FILTERS = Registry("group filter", "config.rl.group_filters")


@dataclasses.dataclass
class Groups:
  """Scored rollouts of whole groups, prompt-major: rows g*G .. g*G+G-1 are group g's completions."""
  group_size: int
  prompts: list  # [num_groups] prompt token lists
  examples: list  # [num_groups * G] the example behind each row
  tokens: np.ndarray  # [N, C] sampled completion tokens
  lengths: np.ndarray  # [N]
  logprobs: np.ndarray  # [N, C] the sampler's log-probs under its sampling distribution (rl.temperature)
  rewards_NxK: np.ndarray  # [N, K] each reward function's value
  valid_N: np.ndarray  # [N] False where a reward failed on the row
  total_N: np.ndarray  # [N] the combined reward
  passed_N: np.ndarray  # [N] the task verifier accepted the completion
  prefix_len_N: np.ndarray = None  # [N] leading completion tokens that are a forced demonstration prefix (Prefix-RFT)
  guided_N: np.ndarray = None  # [N] bool: sampled with a hint in the prompt (Guide); the hint is not in `prompts`

  def __post_init__(self):  # rollouts of neither kind unless the collector says so
    n = len(self.lengths)
    if self.prefix_len_N is None:
      self.prefix_len_N = np.zeros(n, np.int32)
    if self.guided_N is None:
      self.guided_N = np.zeros(n, bool)

  @property
  def all_failed(self) -> np.ndarray:
    """bool [num_groups]: no valid row of the group passed the task verifier (the groups Guide and ReLIFT serve)."""
    return ~(self.passed_N & self.valid_N).reshape(-1, self.group_size).any(axis=1)

  @property
  def num_groups(self) -> int:
    return len(self.prompts)

  def take(self, group_ids) -> "Groups":
    group_ids = np.asarray(group_ids, np.int64)
    rows = (group_ids[:, None] * self.group_size + np.arange(self.group_size)).reshape(-1)
    return Groups(self.group_size, [self.prompts[g] for g in group_ids], [self.examples[r] for r in rows],
                  *(getattr(self, f)[rows] for f in _ROW_ARRAYS))

  @staticmethod
  def concat(parts: list["Groups"]) -> "Groups":
    first = parts[0]
    return Groups(first.group_size, [p for g in parts for p in g.prompts], [e for g in parts for e in g.examples],
                  *(np.concatenate([getattr(g, f) for g in parts]) for f in _ROW_ARRAYS))


_ROW_ARRAYS = ("tokens", "lengths", "logprobs", "rewards_NxK", "valid_N", "total_N", "passed_N", "prefix_len_N",
               "guided_N")


def keep_groups(groups: Groups, *, drop_equal: bool, pass_rate_min: float = 0.0,
                pass_rate_max: float = 1.0) -> np.ndarray:
  """bool [num_groups]: the groups worth training on. Only valid rows count toward equality and pass rate;
  a group with no valid row is never kept."""
  g = groups.group_size
  valid_GxS = groups.valid_N.reshape(-1, g)
  total_GxS = groups.total_N.reshape(-1, g)
  keep = valid_GxS.any(axis=1)
  if drop_equal:
    high = np.where(valid_GxS, total_GxS, -np.inf).max(axis=1)
    low = np.where(valid_GxS, total_GxS, np.inf).min(axis=1)
    keep &= high > low
  if pass_rate_min > 0.0 or pass_rate_max < 1.0:
    passed = (groups.passed_N.reshape(-1, g) & valid_GxS).sum(axis=1)
    rate = passed / np.maximum(valid_GxS.sum(axis=1), 1)
    keep &= (rate >= pass_rate_min) & (rate <= pass_rate_max)
  return keep


@dataclasses.dataclass
class Collected:
  batch: Groups  # exactly `num_groups` groups to train on
  sampled: Groups  # every group sampled this step, kept or not (for reward metrics)
  rounds: int
  kept: int  # groups that passed the filters (may exceed num_groups; the extra are not used)


def collect_groups(sample_round: Callable[[int], Groups], num_groups: int, max_rounds: int,
                   keep: Callable[[Groups], np.ndarray]) -> Collected:
  """Calls `sample_round(r)` for r = 0, 1, ... until `num_groups` groups pass `keep` or `max_rounds` rounds
  have run, then returns the first `num_groups` kept groups, topped up with dropped ones if short."""
  kept_parts, dropped_parts, sampled_parts = [], [], []
  kept_count, rounds = 0, 0
  while rounds < max(max_rounds, 1):
    groups = sample_round(rounds)
    rounds += 1
    mask = keep(groups)
    sampled_parts.append(groups)
    kept_parts.append(groups.take(np.flatnonzero(mask)))
    dropped_parts.append(groups.take(np.flatnonzero(~mask)))
    kept_count += int(mask.sum())
    if kept_count >= num_groups:
      break
  pool = Groups.concat(kept_parts + dropped_parts)
  return Collected(pool.take(np.arange(num_groups)), Groups.concat(sampled_parts), rounds, kept_count)


@GROUP_FILTERS.register("equal_rewards")
def equal_rewards_filter(rl) -> Callable[[Groups], np.ndarray]:
  """DAPO's dynamic sampling: drop groups whose valid rewards are all equal (zero advantages)."""
  return lambda groups: keep_groups(groups, drop_equal=True)


@GROUP_FILTERS.register("pass_rate")
def pass_rate_filter(rl) -> Callable[[Groups], np.ndarray]:
  """Balanced difficulty: keep groups whose pass rate lies in [rl.pass_rate_min, rl.pass_rate_max]."""
  return lambda groups: keep_groups(groups, drop_equal=False, pass_rate_min=rl.pass_rate_min,
                                    pass_rate_max=rl.pass_rate_max)


def filter_names(rl) -> list[str]:
  """The filters a config turns on: its flags' built-ins, then the names in rl.group_filters."""
  names = ((["equal_rewards"] if rl.dynamic_sampling else [])
           + (["pass_rate"] if rl.pass_rate_min > 0.0 or rl.pass_rate_max < 1.0 else []))
  return names + [n for n in split_names(rl.group_filters) if n not in names]


def make_keep(rl) -> Callable[[Groups], np.ndarray]:
  """bool [num_groups]: the groups every configured filter keeps (any group with a valid row when none is on)."""
  filters = [GROUP_FILTERS.get(n, where=f"config.rl.group_filters={rl.group_filters!r}")(rl)
             for n in filter_names(rl)]

  def keep(groups: Groups) -> np.ndarray:
    mask = keep_groups(groups, drop_equal=False)
    for f in filters:
      mask = mask & f(groups)
    return mask

  return keep
