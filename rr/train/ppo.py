"""PPO in the RL trainer (`config.rl.advantage = "ppo"`): a value head on the policy's trunk and GAE.

docs/methods.md, "Advantage estimators" (PPO). The row's combined reward is paid on its last completion token (0
on the others); values are read where the log-probs are (`rollout_batch`: mask[t] = 1 when tokens[t + 1] is a
completion token). Before the update, `make_targets` records old log-probs and old values with the current
params and turns them into per-token advantages and returns with GAE; the step then adds `vf_coef` times the
clipped value loss to the policy loss. A row whose reward failed gets advantage 0 and no value target.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from rr.losses import sequence_log_probs, value_loss
from rr.models import Decoder, apply_value_head
from rr.rewards import gae
from rr.train.rollout import policy_forward


@dataclasses.dataclass(frozen=True)
class ValueConfig:
  """The `config.rl` keys of PPO's critic: GAE's gamma and lambda, the value loss's weight and clip."""
  gamma: float = 1.0
  lam: float = 0.95
  vf_coef: float = 0.1
  value_clip: float = 0.2
  whiten: bool = True


def value_config(rl) -> ValueConfig:
  return ValueConfig(gamma=rl.gae_gamma, lam=rl.gae_lambda, vf_coef=rl.vf_coef, value_clip=rl.value_clip,
                     whiten=rl.whiten_advantages)


def row_rewards(total_N: np.ndarray, valid_N: np.ndarray) -> dict[str, np.ndarray]:
  """Host batch entries for `make_targets`: the reward of each row (0 where it failed) and its validity."""
  valid_N = np.asarray(valid_N, bool) & np.isfinite(total_N)
  return {"rewards": np.where(valid_N, total_N, 0.0).astype(np.float32), "valid": valid_N.astype(np.float32)}


def terminal_rewards(rewards_B: jax.Array, mask_BxT: jax.Array) -> jax.Array:
  """Per-token rewards: the row's reward on its last active position, 0 elsewhere (the mask is contiguous)."""
  next_mask_BxT = jnp.concatenate([mask_BxT[:, 1:], jnp.zeros_like(mask_BxT[:, :1])], axis=1)
  return mask_BxT * (1.0 - next_mask_BxT) * rewards_B[:, None]


def whiten(x_BxT: jax.Array, mask_BxT: jax.Array, eps: float = 1e-8) -> jax.Array:
  """(x - mean) / std over the active tokens of the whole batch; 0 off the mask."""
  count = jnp.maximum(mask_BxT.sum(), 1.0)
  mean = (x_BxT * mask_BxT).sum() / count
  var = (jnp.square(x_BxT - mean) * mask_BxT).sum() / count
  return (x_BxT - mean) * jax.lax.rsqrt(var + eps) * mask_BxT


def make_targets(model: Decoder, cfg: ValueConfig, shared_prompt: tuple[int, int] | None = None,
                 temperature: float = 1.0) -> Callable:
  """`targets(state, batch) -> {old_logp, old_values, advantages, returns, value_mask}` ([B, T] each).

  Run once per batch, before the first epoch, so every epoch's ratio and value clip refer to the
  params that produced the rollouts' advantages. `shared_prompt` as in `rr.train.rollout.policy_forward`;
  `temperature` is the sampler's, so the old log-probs are those of the distribution that sampled.
  """

  def targets(state, batch):
    logits_BxTxV, hidden_BxTxD = policy_forward(model, state["params"], batch["tokens"], batch["positions"],
                                                shared_prompt)
    values_BxT = apply_value_head(state["value_head"], hidden_BxTxD)
    mask_BxT = batch["mask"]
    value_mask_BxT = mask_BxT * batch["valid"][:, None]
    advantages_BxT, returns_BxT = gae(terminal_rewards(batch["rewards"], mask_BxT), values_BxT, mask_BxT,
                                      gamma=cfg.gamma, lam=cfg.lam)
    if cfg.whiten:
      advantages_BxT = whiten(advantages_BxT, value_mask_BxT)
    return {"old_logp": sequence_log_probs(logits_BxTxV, batch["tokens"], temperature),
            "old_values": values_BxT * mask_BxT,
            "advantages": advantages_BxT * value_mask_BxT, "returns": returns_BxT, "value_mask": value_mask_BxT}

  return jax.jit(targets)


def value_terms(value_head, hidden_BxTxD: jax.Array, batch, cfg: ValueConfig) -> tuple[jax.Array, dict]:
  """(vf_coef * clipped value loss, {value_loss, value_clip_frac, values_mean}) for the step's loss."""
  values_BxT = apply_value_head(value_head, hidden_BxTxD)
  mask_BxT = batch["value_mask"]
  loss, metrics = value_loss(values_BxT, batch["returns"], batch["old_values"], mask_BxT, cfg.value_clip)
  values_mean = jnp.sum(jax.lax.stop_gradient(values_BxT) * mask_BxT) / jnp.maximum(mask_BxT.sum(), 1.0)
  return cfg.vf_coef * loss, {**metrics, "value_loss": jax.lax.stop_gradient(loss), "values_mean": values_mean}
