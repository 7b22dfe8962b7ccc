"""The train state pytree `{"step", "params", "opt_state"}`, created directly in its shardings.

Param shardings come from the model's logical axis names and the mesh rules; optimiser moments take the
sharding of the param they track (optax.tree_map_params), counters are replicated. Nothing is built on the
host first, so a model larger than one device never needs a full copy anywhere.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from rr import models, sharding


def state_shardings(model_cfg: models.ModelConfig, optimizer: optax.GradientTransformation,
                    mesh: jax.sharding.Mesh) -> dict[str, Any]:
  param_sh = sharding.logical_to_shardings(models.param_logical_axes(model_cfg), mesh)
  abstract_params = jax.eval_shape(lambda: models.init_params(model_cfg, jax.random.key(0)))
  abstract_opt = jax.eval_shape(optimizer.init, abstract_params)
  replicated = sharding.replicated(mesh)
  opt_sh = optax.tree_map_params(optimizer, lambda _, s: s, abstract_opt, param_sh,
                                 transform_non_params=lambda _: replicated)
  return {"step": replicated, "params": param_sh, "opt_state": opt_sh}


def init_train_state(model_cfg: models.ModelConfig, optimizer: optax.GradientTransformation,
                     mesh: jax.sharding.Mesh, seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
  """Returns (state, shardings), the state already laid out on the mesh."""
  shardings = state_shardings(model_cfg, optimizer, mesh)

  def create(rng):
    params = models.init_params(model_cfg, rng)
    return {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": optimizer.init(params)}

  state = jax.jit(create, out_shardings=shardings)(jax.random.key(seed))
  return state, shardings
