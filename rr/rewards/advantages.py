"""Advantage estimators: group baselines (GRPO, Dr.GRPO, RLOO, REINFORCE++) and GAE for PPO.

docs/methods.md, "Advantage estimators". Rows come in groups of `group_size` consecutive completions of one
prompt. A row whose reward failed (NaN, or `valid_B` False) gets advantage 0 and is left out of every statistic,
so one bad reward costs one row, not the batch. All functions are jittable with `group_size` static.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rr.errors import UserError

ESTIMATORS = ("grpo", "drgrpo", "rloo", "reinforce++")


class GroupSizeError(UserError, ValueError):
  """The batch of completions does not split into whole groups."""


def check_group_size(batch_size: int, group_size: int) -> None:
  """Raise before any work when the batch does not split into groups of `group_size`."""
  if group_size < 1 or batch_size % group_size:
    raise GroupSizeError(
        f"batch size {batch_size} is not divisible by group size {group_size}; make the number of "
        f"completions per step a multiple of the completions per prompt")


def _grouped(rewards_B, group_size, valid_B):
  """(rewards, valid) as float [num_groups, G]; failed rewards become 0 with valid 0."""
  check_group_size(rewards_B.shape[0], group_size)
  rewards_B = rewards_B.astype(jnp.float32)
  valid = jnp.isfinite(rewards_B)
  if valid_B is not None:
    valid = valid & valid_B.astype(bool)
  valid_B = valid.astype(jnp.float32)
  rewards_B = jnp.where(valid, rewards_B, 0.0)
  return rewards_B.reshape(-1, group_size), valid_B.reshape(-1, group_size)


def _group_mean(r_NxG, v_NxG):
  count_Nx1 = v_NxG.sum(-1, keepdims=True)
  return (r_NxG * v_NxG).sum(-1, keepdims=True) / jnp.maximum(count_Nx1, 1.0), count_Nx1


def _masked_std(x, v, mean):
  """Unbiased std of the valid entries of x around `mean` (0 when fewer than 2 are valid)."""
  count = v.sum()
  return jnp.sqrt((v * jnp.square(x - mean)).sum() / jnp.maximum(count - 1.0, 1.0))


def group_advantages(rewards_B: jax.Array, group_size: int, *, valid_B: jax.Array | None = None,
                     scale_by_std: bool = True, scale: str = "group", eps: float = 1e-4) -> jax.Array:
  """GRPO: (r - mean_group) / (std + eps), unbiased std over the group or (`scale="batch"`) the batch.

  `scale_by_std=False` is Dr.GRPO: r - mean_group, which does not favour groups with small spread.
  """
  if scale not in ("group", "batch"):
    raise ValueError(f"scale={scale!r}; expected 'group' or 'batch'")
  r_NxG, v_NxG = _grouped(rewards_B, group_size, valid_B)
  mean_Nx1, _ = _group_mean(r_NxG, v_NxG)
  adv_NxG = r_NxG - mean_Nx1
  if scale_by_std:
    if scale == "group":
      std_Nx1 = jax.vmap(_masked_std)(r_NxG, v_NxG, mean_Nx1[:, 0])[:, None]
    else:
      batch_mean = (r_NxG * v_NxG).sum() / jnp.maximum(v_NxG.sum(), 1.0)
      std_Nx1 = _masked_std(r_NxG, v_NxG, batch_mean)
    adv_NxG = adv_NxG / (std_Nx1 + eps)
  return (adv_NxG * v_NxG).reshape(-1)


def rloo_advantages(rewards_B: jax.Array, group_size: int, *,
                    valid_B: jax.Array | None = None) -> jax.Array:
  """RLOO: r_i - mean of the other valid rewards of the group (0 when the row is alone in its group)."""
  r_NxG, v_NxG = _grouped(rewards_B, group_size, valid_B)
  sum_Nx1 = (r_NxG * v_NxG).sum(-1, keepdims=True)
  count_Nx1 = v_NxG.sum(-1, keepdims=True)
  others_mean_NxG = (sum_Nx1 - r_NxG) / jnp.maximum(count_Nx1 - 1.0, 1.0)
  has_others_Nx1 = (count_Nx1 > 1.0).astype(jnp.float32)
  return ((r_NxG - others_mean_NxG) * v_NxG * has_others_Nx1).reshape(-1)


def reinforce_pp_advantages(rewards_B: jax.Array, group_size: int, *, valid_B: jax.Array | None = None,
                            eps: float = 1e-4) -> jax.Array:
  """REINFORCE++ with group baseline: r - mean_group, then (x - mean_batch) / (std_batch + eps), unbiased std.

  Normalising over the whole batch instead of each group keeps the scale stable when a group's rewards
  barely differ.
  """
  r_NxG, v_NxG = _grouped(rewards_B, group_size, valid_B)
  mean_Nx1, _ = _group_mean(r_NxG, v_NxG)
  x_NxG = (r_NxG - mean_Nx1) * v_NxG
  batch_mean = x_NxG.sum() / jnp.maximum(v_NxG.sum(), 1.0)
  std = _masked_std(x_NxG, v_NxG, batch_mean)
  return ((x_NxG - batch_mean) / (std + eps) * v_NxG).reshape(-1)


def compute_advantages(name: str, rewards_B: jax.Array, group_size: int, *,
                       valid_B: jax.Array | None = None, **opts) -> jax.Array:
  """Advantage per completion by estimator name: "grpo", "drgrpo", "rloo" or "reinforce++".

  `opts` go to the estimator (`scale`, `eps` for grpo; `eps` for drgrpo is ignored; `eps` for reinforce++).
  """
  if name == "grpo":
    return group_advantages(rewards_B, group_size, valid_B=valid_B, **opts)
  if name == "drgrpo":
    opts.pop("eps", None)
    return group_advantages(rewards_B, group_size, valid_B=valid_B, scale_by_std=False, **opts)
  if name == "rloo":
    return rloo_advantages(rewards_B, group_size, valid_B=valid_B, **opts)
  if name == "reinforce++":
    return reinforce_pp_advantages(rewards_B, group_size, valid_B=valid_B, **opts)
  raise ValueError(f"advantage estimator {name!r}; expected one of {ESTIMATORS} (PPO uses gae())")


def gae(rewards_BxT: jax.Array, values_BxT: jax.Array, mask_BxT: jax.Array, gamma: float,
        lam: float) -> tuple[jax.Array, jax.Array]:
  """Generalised advantage estimation over completion tokens; returns (advantages_BxT, returns_BxT).

  delta_t = r_t + gamma * m_{t+1} V_{t+1} - V_t and A_t = delta_t + gamma * lam * m_{t+1} A_{t+1}: the
  episode ends at the last active token (nothing is bootstrapped past it). Masked positions get 0.
  returns = A + V is the value target. A reverse `lax.scan` over time, so T need not be unrolled.
  """
  mask_BxT = mask_BxT.astype(jnp.float32)
  rewards_BxT = rewards_BxT.astype(jnp.float32) * mask_BxT
  values_BxT = values_BxT.astype(jnp.float32) * mask_BxT
  next_values_BxT = jnp.concatenate([values_BxT[:, 1:], jnp.zeros_like(values_BxT[:, :1])], axis=1)
  next_mask_BxT = jnp.concatenate([mask_BxT[:, 1:], jnp.zeros_like(mask_BxT[:, :1])], axis=1)
  delta_BxT = rewards_BxT + gamma * next_values_BxT * next_mask_BxT - values_BxT

  def step(next_adv_B, xs):
    delta_B, next_m_B = xs
    adv_B = delta_B + gamma * lam * next_m_B * next_adv_B
    return adv_B, adv_B

  _, adv_TxB = jax.lax.scan(step, jnp.zeros_like(delta_BxT[:, 0]), (delta_BxT.T, next_mask_BxT.T),
                            reverse=True)
  adv_BxT = jax.lax.stop_gradient(adv_TxB.T * mask_BxT)
  return adv_BxT, jax.lax.stop_gradient(adv_BxT + values_BxT)
