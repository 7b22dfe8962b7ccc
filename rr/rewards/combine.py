"""Combinators that turn per-reward columns into one reward per completion.

All are pure jnp functions of arrays, so they are jittable (shapes and group_size are static) and run inside
the train step or on the host alike. Rows are laid out as groups of G consecutive completions of one prompt.
"""

from __future__ import annotations

import jax.numpy as jnp

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
