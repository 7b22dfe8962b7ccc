"""From a scored rollout batch to advantages, on the device, once per batch and before its `rl.epochs` updates.

docs/methods.md, "Advantage estimators". An estimator is registered by the name `config.rl.advantage` uses:

  @advantages.ESTIMATORS.register("max_baseline")
  def max_baseline(config, parts):
    return Estimator(lambda state, batch: batch.replace(advantages=...))   # a jittable TrainBatch -> TrainBatch

  --config.rl.advantage=max_baseline

`make_prepare` composes the steps every estimator shares into one jitted call: the KL penalty of
rl.kl_mode="reward" comes off each completion's reward first, the sampling policy's log-probs are recorded when
the update reuses the batch (mu > 1), then the estimator runs. Rewards arrive as host numbers and leave as device
arrays; nothing goes back to the host in between.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

from rr import sharding
from rr.losses import sequence_kl
from rr.registry import Registry
from rr.rewards import compute_advantages
from rr.train.batch import TrainBatch
from rr.train.objectives import Forward, Parts
from rr.train.state import trainable, untrained

ESTIMATORS = Registry("advantage estimator", "config.rl.advantage")


@dataclasses.dataclass(frozen=True)
class Estimator:
  """`advantages(state, batch) -> batch` with `advantages` filled (and whatever else the update reads)."""
  advantages: Callable[[dict, TrainBatch], TrainBatch]
  value_head: bool = False  # the state carries a value head on the policy's trunk, trained by the "value" term
  min_group_size: int = 2  # group baselines need two completions per prompt; PPO's critic does not
  records_old_logp: bool = False  # `advantages` sets batch.old_logp itself


def _group_estimator(name: str, **opts_from_config):

  def make(config, parts: Parts) -> Estimator:
    group = config.rl.group_size
    opts = {key: config.rl[field] for key, field in opts_from_config.items()}
    return Estimator(lambda state, batch: batch.replace(advantages=compute_advantages(
        name, batch.rewards, group, valid_B=batch.valid > 0, **opts)))

  return make


ESTIMATORS.register("grpo")(_group_estimator("grpo", scale="advantage_scale"))
ESTIMATORS.register("drgrpo")(_group_estimator("drgrpo"))
ESTIMATORS.register("rloo")(_group_estimator("rloo"))
ESTIMATORS.register("reinforce++")(_group_estimator("reinforce++"))


def policy_log_probs(parts: Parts, params, batch: TrainBatch) -> jax.Array:
  """log-probs of the batch's tokens under `params` at the sampling temperature, as the objective reads them."""
  return Forward(parts, params, batch, None, None).logp


def make_prepare(config, parts: Parts, estimator: Estimator, shardings: dict, mesh: jax.sharding.Mesh,
                 frozen_shardings: dict | None = None) -> Callable:
  """`prepare(state, batch, frozen) -> (batch, metrics)`, jitted: rewards to advantages on the device."""
  rl, loss_cfg = config.rl, parts.loss_cfg
  kl_in_reward = loss_cfg.kl_beta > 0 and loss_cfg.kl_mode == "reward"
  record_old = rl.epochs > 1 and not estimator.records_old_logp

  def prepare(state, batch: TrainBatch, frozen):
    metrics = {}
    fwd = Forward(parts, trainable(state), batch, {**frozen, **untrained(state)}, None)  # each runs at most once
    if kl_in_reward:
      logp, ref_logp = fwd.logp, fwd.frozen_logp("reference")
      penalty_B = loss_cfg.kl_beta * sequence_kl(logp, ref_logp, batch.policy_mask, loss_cfg.kl_estimator)
      batch = batch.replace(rewards=batch.rewards - penalty_B, kl_penalty=penalty_B)
      valid = batch.valid > 0
      metrics["kl_reward_penalty"] = (jnp.where(valid, penalty_B, 0.0).sum() / jnp.maximum(valid.sum(), 1))
    if record_old:
      batch = batch.replace(old_logp=fwd.logp)
    return estimator.advantages(state, batch), metrics

  batch_sh = sharding.batch_sharding(mesh)
  return jax.jit(prepare, in_shardings=(shardings, batch_sh, frozen_shardings or {}),
                 out_shardings=(batch_sh, sharding.replicated(mesh)))
