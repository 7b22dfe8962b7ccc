"""The SFT train step: one jitted function with in/out shardings over the mesh (this is pjit).

The same compiled step serves one CPU, 8 forced CPU devices, a GPU or a TPU slice; only the mesh changes.
The state argument is donated, so params and optimiser moments are updated in place.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import numpy as np
import optax

from rr import sharding
from rr.losses import completion_nll
from rr.models import Decoder
from rr.train.precision import float32_norm


def put_batch(batch: dict[str, np.ndarray], mesh: jax.sharding.Mesh) -> dict[str, jax.Array]:
  """Lays a host batch out over the mesh's data axis; with several processes each feeds its own rows."""
  batch_sh = sharding.batch_sharding(mesh)
  if jax.process_count() == 1:
    return jax.device_put(batch, batch_sh)
  index, count = jax.process_index(), jax.process_count()
  rows = next(iter(batch.values())).shape[0] // count
  return {k: jax.make_array_from_process_local_data(batch_sh, v[index * rows:(index + 1) * rows])
          for k, v in batch.items()}


def make_sft_step(model: Decoder, optimizer: optax.GradientTransformation, shardings: dict[str, Any],
                  mesh: jax.sharding.Mesh) -> Callable:
  """Returns `step(state, batch) -> (state, metrics)`; batch = tokens, positions, loss_mask ([B, L] each)."""

  def loss_fn(params, batch):
    logits_BxTxV, _ = model.apply({"params": params}, batch["tokens"], batch["positions"])
    return completion_nll(logits_BxTxV, batch["tokens"], batch["loss_mask"])

  def step(state, batch):
    (loss, count), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"], batch)
    updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    metrics = {"loss": loss, "grad_norm": float32_norm(grads), "tokens": count}
    return {"step": state["step"] + 1, "params": params, "opt_state": opt_state}, metrics

  return jax.jit(step, in_shardings=(shardings, sharding.batch_sharding(mesh)),
                 out_shardings=(shardings, sharding.replicated(mesh)), donate_argnums=0)
