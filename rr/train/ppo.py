"""PPO as parts of the trainer core: the "ppo" advantage estimator (a value head on the policy's trunk and GAE)
and the value loss the "value" objective term adds (`config.rl.advantage = "ppo"`).

docs/methods.md, "Advantage estimators" (PPO). The row's combined reward is paid on its last completion token (0
on the others); values are read where the log-probs are (the TrainBatch mask convention). Before the update,
`make_targets` records old log-probs and old values with the current params and turns them into per-token
advantages and returns with GAE; the "value" term then adds `vf_coef` times the clipped value loss to the policy
loss. A row whose reward failed gets advantage 0 and no value target.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

from rr.losses import sequence_log_probs, value_loss
from rr.models import Decoder, apply_value_head, shared_prompt_forward
from rr.rewards import gae
from rr.train.advantages import ESTIMATORS, Estimator
from rr.train.batch import TrainBatch
from rr.train.state import policy_params


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
                 temperature: float = 1.0) -> Callable[[dict, TrainBatch], TrainBatch]:
  """`targets(state, batch) -> batch` with old_logp, old_values, advantages, returns, value_mask ([B, T] each).

  Run once per batch, before the first epoch, so every epoch's ratio and value clip refer to the params that
  produced the rollouts' advantages. `shared_prompt` as in `rr.models.shared_prompt_forward`; `temperature` is
  the sampler's, so the old log-probs are those of the distribution that sampled. Jittable; not jitted here.
  """

  def targets(state, batch: TrainBatch) -> TrainBatch:
    logits_BxTxV, hidden_BxTxD = shared_prompt_forward(model, policy_params(state), batch.tokens, batch.positions,
                                                       shared_prompt)
    values_BxT = apply_value_head(state["value_head"], hidden_BxTxD)
    mask_BxT = batch.policy_mask
    valid_B = (batch.valid > 0) & jnp.isfinite(batch.rewards)
    rewards_B = jnp.where(valid_B, batch.rewards, 0.0)
    value_mask_BxT = mask_BxT * valid_B.astype(jnp.float32)[:, None]
    advantages_BxT, returns_BxT = gae(terminal_rewards(rewards_B, mask_BxT), values_BxT, mask_BxT,
                                      gamma=cfg.gamma, lam=cfg.lam)
    if cfg.whiten:
      advantages_BxT = whiten(advantages_BxT, value_mask_BxT)
    return batch.replace(old_logp=sequence_log_probs(logits_BxTxV, batch.tokens, temperature),
                         old_values=values_BxT * mask_BxT, advantages=advantages_BxT * value_mask_BxT,
                         returns=returns_BxT, value_mask=value_mask_BxT)

  return targets


@ESTIMATORS.register("ppo")
def ppo_estimator(config, parts) -> Estimator:
  """GAE over a learned value head (the state gets one; the "value" term trains it)."""
  rl = config.rl
  if not (0.0 <= rl.gae_gamma <= 1.0 and 0.0 <= rl.gae_lambda <= 1.0 and rl.value_clip > 0.0 and rl.vf_coef >= 0.0):
    raise ValueError(f"PPO needs config.rl.gae_gamma and gae_lambda in [0, 1] (got {rl.gae_gamma}, {rl.gae_lambda}), "
                     f"value_clip > 0 (got {rl.value_clip}) and vf_coef >= 0 (got {rl.vf_coef})")
  cfg = value_config(rl)
  return Estimator(make_targets(parts.model, cfg, parts.shared_prompt, parts.temperature), value_head=True,
                   min_group_size=1, records_old_logp=True)


def value_terms(value_head, hidden_BxTxD: jax.Array, batch: TrainBatch, cfg: ValueConfig) -> tuple[jax.Array, dict]:
  """(vf_coef * clipped value loss, {value_loss, value_clip_frac, values_mean}) for the step's loss."""
  values_BxT = apply_value_head(value_head, hidden_BxTxD)
  mask_BxT = batch.value_mask
  loss, metrics = value_loss(values_BxT, batch.returns, batch.old_values, mask_BxT, cfg.value_clip)
  values_mean = jnp.sum(jax.lax.stop_gradient(values_BxT) * mask_BxT) / jnp.maximum(mask_BxT.sum(), 1.0)
  return cfg.vf_coef * loss, {**metrics, "value_loss": jax.lax.stop_gradient(loss), "values_mean": values_mean}
