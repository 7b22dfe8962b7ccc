"""The one train-step factory: an objective in, one jitted step with in/out shardings over the mesh out
(this is pjit), for every trainer.

`objective(trainable, batch, frozen, rng) -> (loss, metrics)` says what to minimise (rr.train.objectives: SFT's
NLL, the GRPO family's surrogate, the KL to a frozen reference, PPO's value term, later distillation, as sums of
terms). Everything else is the same for all of them and lives here once: gradients of the trainable
trees (rr.train.state.trainable: the params, plus a value head), the optimiser (clipping and the float32
master inside it), donation of the state, and the non-finite guard: a step whose loss, gradient norm or any
metric is not finite leaves params and optimiser state unchanged and says which term it was.

The same compiled step serves one CPU, 8 forced CPU devices, a GPU or a TPU slice; only the mesh changes.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from rr import sharding
from rr.config import ConfigError
from rr.train.precision import float32_norm
from rr.train.state import trainable, untrained, with_trainable

Objective = Callable[[Any, Any, Any, jax.Array], tuple[jax.Array, dict[str, jax.Array]]]


def make_train_step(objective: Objective, optimizer: optax.GradientTransformation, shardings: dict[str, Any],
                    mesh: jax.sharding.Mesh, frozen_shardings: dict | None = None, seed: int = 0,
                    micro_batches: int = 1) -> Callable:
  """`step(state, batch, frozen) -> (state, metrics)`, jitted with shardings and the state donated.

  `frozen`: the frozen models' params by name ({} or e.g. {"reference": params}), placed by `frozen_shardings`
  (a dict of their shardings by the same names). The objective's rng is a pure function of (seed, optimiser
  step), so a resumed run draws the same. metrics hold the objective's own plus `loss`, `grad_norm`, `finite`
  and `finite_terms` (which term was not finite). `micro_batches` > 1 accumulates the gradient over that many
  micro-batches (`accumulated_grads`).
  """
  grads_of = jax.value_and_grad(objective, has_aux=True)

  def step(state, batch, frozen):
    rng = jax.random.fold_in(jax.random.key(seed), state["step"])
    frozen = {**frozen, **untrained(state)}  # e.g. the weights LoRA adapters sit on
    if micro_batches == 1:
      (loss, metrics), grads = grads_of(trainable(state), batch, frozen, rng)
    else:
      loss, metrics, grads = accumulated_grads(grads_of, objective, trainable(state), batch, frozen, rng,
                                               micro_batches, mesh)
    grad_norm = float32_norm(grads)
    finite = {name: jnp.all(jnp.isfinite(value)) for name, value in
              (("loss", loss), ("grad_norm", grad_norm), *metrics.items())}
    ok = jnp.all(jnp.stack(list(finite.values())))
    updates, opt_state = optimizer.update(grads, state["opt_state"], trainable(state))
    new = {**with_trainable(state, optax.apply_updates(trainable(state), updates)), "step": state["step"] + 1,
           "opt_state": opt_state}
    state = jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, state)
    return state, {**metrics, "loss": loss, "grad_norm": grad_norm, "finite": ok, "finite_terms": finite}

  in_shardings = (shardings, sharding.batch_sharding(mesh), frozen_shardings or {})
  return jax.jit(step, in_shardings=in_shardings, out_shardings=(shardings, sharding.replicated(mesh)),
                 donate_argnums=0)


def accumulated_grads(grads_of: Callable, objective: Objective, params, batch, frozen, rng: jax.Array,
                      micro_batches: int, mesh: jax.sharding.Mesh):
  """(loss, metrics, grads) of the whole batch from `micro_batches` forward/backward passes over a part each.

  Each term divides by the whole batch's counts (objective.totals, rr.train.objectives.batch_totals), so the
  micro-batches' losses and float32 gradients add up to the whole batch's: the update is the full batch's, the
  memory of activations one micro-batch's. A micro-batch takes the same slice of every data shard's rows, so no
  row moves between devices, and consecutive rows stay together (a rollout group, when the slice holds whole
  groups). Metrics are the mean over the micro-batches (the loss is their sum).
  """
  totals = objective.totals(batch) if hasattr(objective, "totals") else None
  shards = sharding.batch_shards(mesh)
  rows = batch.tokens.shape[0]
  per_slice = rows // (shards * micro_batches)

  def micro(x):  # [B, ...] -> [M, B / M, ...]: micro-batch m = rows m*s .. m*s+s-1 of every shard's block
    x = x.reshape(shards, micro_batches, per_slice, *x.shape[1:]).swapaxes(0, 1)
    return x.reshape(micro_batches, shards * per_slice, *x.shape[3:])

  batch_sh = sharding.batch_sharding(mesh)

  def body(grads_sum, inputs):
    index, part = inputs
    part = jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, batch_sh), part)
    (loss, metrics), grads = grads_of(params, part, frozen, jax.random.fold_in(rng, index), totals)
    grads_sum = jax.tree.map(lambda a, g: a + g.astype(jnp.float32), grads_sum, grads)
    return grads_sum, (loss, metrics)

  zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)
  grads, (losses, metrics) = jax.lax.scan(body, zeros, (jnp.arange(micro_batches), jax.tree.map(micro, batch)))
  return losses.sum(), jax.tree.map(lambda m: m.mean(0), metrics), grads


def check_micro_batches(micro_batches: int, rows: int, mesh: jax.sharding.Mesh, rows_key: str, group: int = 1) -> None:
  """Refuses, before any work, a train.micro_batches that does not cut every data shard's rows into equal
  slices (of whole rollout groups of `group` rows)."""
  if micro_batches == 1:
    return
  shards = sharding.batch_shards(mesh)
  if micro_batches < 1 or rows % (shards * micro_batches) or (rows // (shards * micro_batches)) % group:
    whole = f" of whole groups of {group} rows (rl.group_size)" if group > 1 else ""
    raise ConfigError(f"config.train.micro_batches={micro_batches} must be >= 1 and split the {rows} rows of "
                      f"{rows_key} on each of the mesh's {shards} batch shards into equal micro-batches{whole}; "
                      "pick a divisor")
