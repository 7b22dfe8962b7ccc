"""Combinators that turn per-reward columns into one reward per completion.

All are pure jnp functions of arrays, so they are jittable (shapes, group_size and columns are static) and run
inside the train step or on the host alike. Rows are laid out as groups of G consecutive completions of one
prompt. `Combination` is the one chosen by `config.rl.reward_combine`, which RolloutCollector (rr.train.collector)
calls on each round.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from rr.rewards.advantages import check_group_size

NORMALIZE_EPS = 1e-6  # added to a group's std so a group with equal rewards divides by ~eps, not 0


def weighted_sum(rewards_NxK, weights_K):
  """sum_k w_k * r_k per row (TRL's default combination; normalise afterwards in the advantage). Jittable."""
  return jnp.asarray(rewards_NxK, jnp.float32) @ jnp.asarray(weights_K, jnp.float32)


def normalize_then_sum(rewards_NxK, weights_K, group_size: int, valid_N=None, eps: float = NORMALIZE_EPS):
  """GDPO: normalise each reward column within its group, (r - mean) / (std + eps), then the weighted sum, so
  one reward's scale cannot drown the others. mean and std (population, ddof=0) are over the group's valid
  rows; invalid rows get 0. A column equal across a group contributes 0 there. Jittable (group_size static).
  """
  rewards_NxK = jnp.asarray(rewards_NxK, jnp.float32)
  n, k = rewards_NxK.shape
  check_group_size(n, group_size)
  valid_N = jnp.ones(n, bool) if valid_N is None else jnp.asarray(valid_N, bool)
  r_GxSxK = rewards_NxK.reshape(n // group_size, group_size, k)
  m_GxSx1 = valid_N.reshape(n // group_size, group_size, 1).astype(jnp.float32)
  count_Gx1x1 = jnp.maximum(m_GxSx1.sum(axis=1, keepdims=True), 1.0)
  mean_Gx1xK = (r_GxSxK * m_GxSx1).sum(axis=1, keepdims=True) / count_Gx1x1
  var_Gx1xK = (jnp.square(r_GxSxK - mean_Gx1xK) * m_GxSx1).sum(axis=1, keepdims=True) / count_Gx1x1
  z_GxSxK = (r_GxSxK - mean_Gx1xK) / (jnp.sqrt(var_Gx1xK) + eps) * m_GxSx1
  return z_GxSxK.reshape(n, k) @ jnp.asarray(weights_K, jnp.float32)


def gate(format_N, outcome_N, process_N):
  """Posterior-GRPO: R = R_format + R_outcome + R_outcome * R_process, so the process reward counts only when
  the outcome is right (with outcome in {0, 1}) and a good-looking wrong rationale earns nothing. Jittable."""
  format_N, outcome_N, process_N = (jnp.asarray(x, jnp.float32) for x in (format_N, outcome_N, process_N))
  return format_N + outcome_N + outcome_N * process_N


def gated_sum(rewards_NxK, weights_K, outcome_column: int, process_columns: tuple[int, ...]):
  """Posterior-GRPO's gate with weights: sum_k w_k r_k, where each process column is first multiplied by the
  outcome column (1 if the answer is right, else 0). So a process reward counts only when the outcome is
  right, each reward keeps its own weight, and the outcome's weight applies to the outcome term alone:
  R = w_f R_format + w_o R_outcome + w_p R_outcome R_process (+ any other reward, weighted). With weights 1 on
  (format, outcome, process) this is `gate`. Jittable (columns static)."""
  rewards_NxK = jnp.asarray(rewards_NxK, jnp.float32)
  gated_K = np.zeros(rewards_NxK.shape[1], bool)
  gated_K[list(process_columns)] = True
  outcome_Nx1 = rewards_NxK[:, outcome_column:outcome_column + 1]
  gated_NxK = jnp.where(gated_K[None, :], rewards_NxK * outcome_Nx1, rewards_NxK)
  return gated_NxK @ jnp.asarray(weights_K, jnp.float32)


COMBINE_MODES = ("weighted_sum", "normalize_then_sum", "gate")


@dataclasses.dataclass(frozen=True, eq=False)
class Combination:
  """How the K reward columns of a round become one reward per completion (`config.rl.reward_combine`):
    weighted_sum        sum_k w_k r_k (TRL's default; the advantage normalises afterwards)
    normalize_then_sum  GDPO: each column normalised within its group over valid rows, then weighted
    gate                Posterior-GRPO: process columns count only where the outcome column is 1 (`gated_sum`)
  Invalid rows (valid_N False: a reward failed on them) get no advantage from the trainer whatever their total;
  normalize_then_sum also leaves them out of their group's mean and std.
  """
  mode: str
  weights_K: np.ndarray
  group_size: int = 1  # normalize_then_sum: rows per group
  outcome_column: int | None = None  # gate: the correctness column
  process_columns: tuple[int, ...] = ()  # gate: the columns counted only when the outcome is right

  def __post_init__(self):
    if self.mode not in COMBINE_MODES:
      raise ValueError(f"reward_combine={self.mode!r} is not one of {COMBINE_MODES}")
    if self.mode == "gate" and (self.outcome_column is None or not self.process_columns):
      raise ValueError("reward_combine='gate' needs an outcome column (correctness) and at least one process "
                       "column (e.g. step_correctness)")
    object.__setattr__(self, "weights_K", np.asarray(self.weights_K, np.float32))

  def __call__(self, rewards_NxK, valid_N=None) -> np.ndarray:
    if self.mode == "normalize_then_sum":
      return np.asarray(normalize_then_sum(rewards_NxK, self.weights_K, self.group_size, valid_N=valid_N))
    if self.mode == "gate":
      return np.asarray(gated_sum(rewards_NxK, self.weights_K, self.outcome_column, self.process_columns))
    return np.asarray(weighted_sum(rewards_NxK, self.weights_K))
