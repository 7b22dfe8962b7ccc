"""The train state pytree `{"step", "params", "opt_state"}`, created directly in its shardings.

Param shardings come from the model's logical axis names and the mesh rules; optimiser moments take the
sharding of the param they track (optax.tree_map_params), counters are replicated. Nothing is built on the
host first, so a model larger than one device never needs a full copy anywhere.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Any

import jax
import jax.numpy as jnp
import optax

from rr import models, sharding
from rr.checkpoint import CheckpointError, Checkpoints


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


def starting_state(model_cfg: models.ModelConfig, optimizer: optax.GradientTransformation,
                   mesh: jax.sharding.Mesh, seed: int, record: dict,
                   init_checkpoint: str = "") -> tuple[dict[str, Any], dict[str, Any]]:
  """The state a fresh run starts from: `init_checkpoint`'s params (another run's workdir or checkpoints
  directory; the optimiser starts anew) or random params from `seed`."""
  state, shardings = init_train_state(model_cfg, optimizer, mesh, seed)
  if init_checkpoint:
    source = Checkpoints(_checkpoint_dir(init_checkpoint))
    step = source.latest_step()
    if step is None:
      raise CheckpointError(f"config.init_checkpoint={init_checkpoint!r} holds no checkpoint; point it at a "
                            "run's --workdir or its checkpoints/ directory")
    params = source.restore_params(step, state["params"], expect={"model": record["model"],
                                                                  "vocab_size": record["vocab_size"]})
    state = {**state, "params": params}
  return state, shardings


def restore_or_init(checkpoints: Checkpoints, record: dict, model_cfg: models.ModelConfig,
                    optimizer: optax.GradientTransformation, mesh: jax.sharding.Mesh, seed: int,
                    init_checkpoint: str = "") -> tuple[dict[str, Any], dict[str, Any], int | None]:
  """Returns (state, shardings, resumed step or None): a run resumes from its own latest checkpoint,
  otherwise it starts as `starting_state` says."""
  latest = checkpoints.latest_step()
  if latest is None:
    state, shardings = starting_state(model_cfg, optimizer, mesh, seed, record, init_checkpoint)
    return state, shardings, None
  shardings = state_shardings(model_cfg, optimizer, mesh)
  abstract = jax.eval_shape(lambda: init_train_state(model_cfg, optimizer, mesh, seed)[0])
  abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)
  return checkpoints.restore(latest, abstract, expect=record), shardings, latest


def open_run(workdir: str, config, model_cfg: models.ModelConfig, optimizer: optax.GradientTransformation,
             mesh: jax.sharding.Mesh, vocab_size: int):
  """The checkpoints of a run in `workdir`, its record, and its state (resumed, or started afresh).

  Returns (checkpoints, record, state, shardings, resumed step or None).
  """
  os.makedirs(workdir, exist_ok=True)
  checkpoints = Checkpoints(os.path.join(workdir, "checkpoints"), keep=config.train.keep_checkpoints)
  record = {"model": dataclasses.asdict(model_cfg), "vocab_size": vocab_size}
  state, shardings, resumed = restore_or_init(checkpoints, record, model_cfg, optimizer, mesh, config.seed,
                                             config.init_checkpoint)
  if resumed is not None:
    print(f"rr: resuming from {checkpoints.directory}/{resumed}", file=sys.stderr)
  return checkpoints, record, state, shardings, resumed


def _checkpoint_dir(path: str) -> str:
  nested = os.path.join(path, "checkpoints")
  return nested if os.path.isdir(nested) else path
