"""The one train-step factory: an objective in, one jitted step with in/out shardings over the mesh out
(this is pjit), for every trainer.

`objective(trainable, batch, frozen) -> (loss, metrics)` says what to minimise: SFT's completion NLL, the
policy loss of the GRPO family (with PPO's value term when the state has a value head), later
distillation. Everything else is the same for all of them and lives here once: gradients of the trainable
trees (rr.train.state.trainable: the params, plus a value head), the optimiser (clipping and the float32
master inside it), donation of the state, and the non-finite guard: a step whose loss, gradient norm or any
metric is not finite leaves params and optimiser state unchanged and says which term it was.

The same compiled step serves one CPU, 8 forced CPU devices, a GPU or a TPU slice; only the mesh changes.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rr import sharding
from rr.losses import completion_nll
from rr.models import Decoder
from rr.train.precision import float32_norm
from rr.train.state import trainable, with_trainable

Objective = Callable[[Any, dict, Any], tuple[jax.Array, dict[str, jax.Array]]]


def put_batch(batch: dict[str, np.ndarray], mesh: jax.sharding.Mesh) -> dict[str, jax.Array]:
  """Lays a host batch out over the mesh's data axis; with several processes each feeds its own rows."""
  batch_sh = sharding.batch_sharding(mesh)
  if jax.process_count() == 1:
    return jax.device_put(batch, batch_sh)
  index, count = jax.process_index(), jax.process_count()
  rows = next(iter(batch.values())).shape[0] // count
  return {k: jax.make_array_from_process_local_data(batch_sh, v[index * rows:(index + 1) * rows])
          for k, v in batch.items()}


def make_train_step(objective: Objective, optimizer: optax.GradientTransformation, shardings: dict[str, Any],
                    mesh: jax.sharding.Mesh, frozen_shardings: Any = None, takes_frozen: bool = False) -> Callable:
  """`step(state, batch[, frozen]) -> (state, metrics)`, jitted with shardings and the state donated.

  `takes_frozen`: the step takes a third argument, the frozen models' params (a reference policy today, a
  teacher next), placed by `frozen_shardings` (None when no frozen model is passed). metrics hold the
  objective's own plus `loss`, `grad_norm`, `finite` and `finite_terms` (which term was not finite).
  """

  def step(state, batch, frozen=None):
    (loss, metrics), grads = jax.value_and_grad(objective, has_aux=True)(trainable(state), batch, frozen)
    grad_norm = float32_norm(grads)
    finite = {name: jnp.all(jnp.isfinite(value)) for name, value in
              (("loss", loss), ("grad_norm", grad_norm), *metrics.items())}
    ok = jnp.all(jnp.stack(list(finite.values())))
    updates, opt_state = optimizer.update(grads, state["opt_state"], trainable(state))
    new = {**with_trainable(state, optax.apply_updates(trainable(state), updates)), "step": state["step"] + 1,
           "opt_state": opt_state}
    state = jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, state)
    return state, {**metrics, "loss": loss, "grad_norm": grad_norm, "finite": ok, "finite_terms": finite}

  in_shardings = (shardings, sharding.batch_sharding(mesh))
  out_shardings = (shardings, sharding.replicated(mesh))
  if takes_frozen:
    return jax.jit(step, in_shardings=(*in_shardings, frozen_shardings), out_shardings=out_shardings,
                   donate_argnums=0)
  return jax.jit(lambda state, batch: step(state, batch), in_shardings=in_shardings, out_shardings=out_shardings,
                 donate_argnums=0)


def sft_objective(model: Decoder) -> Objective:
  """Completion-only NLL (docs/methods.md, "SFT loss"); batch = tokens, positions, loss_mask ([B, L] each)."""

  def objective(params, batch, frozen):
    logits_BxTxV, _ = model.apply({"params": params}, batch["tokens"], batch["positions"])
    loss, count = completion_nll(logits_BxTxV, batch["tokens"], batch["loss_mask"])
    return loss, {"tokens": count}

  return objective


def make_sft_step(model: Decoder, optimizer: optax.GradientTransformation, shardings: dict[str, Any],
                  mesh: jax.sharding.Mesh) -> Callable:
  """Returns `step(state, batch) -> (state, metrics)` for SFT: `make_train_step(sft_objective(model), ...)`."""
  return make_train_step(sft_objective(model), optimizer, shardings, mesh)
