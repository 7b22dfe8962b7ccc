"""The train state pytree `{"step", "params", "opt_state"}`, created directly in its shardings.

A PPO run (`value_head=True`) adds `"value_head"` (rr.models.init_value_head, replicated): it sits beside
the policy params, so samplers, evaluation and `init_checkpoint` keep reading `state["params"]` alone,
while one optimiser state covers both (`trainable`), so the global-norm clip sees the whole gradient.

Param shardings come from the model's logical axis names and the mesh rules; optimiser moments take the
sharding of the param they track (optax.tree_map_params), counters are replicated. Nothing is built on the
host first, so a model larger than one device never needs a full copy anywhere.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import jax
import jax.numpy as jnp
import optax

from rr import models, sharding
from rr.checkpoint import CheckpointError, Checkpoints, find_checkpoints_dir


def trainable(state: dict[str, Any]) -> Any:
  """What the optimiser updates: the policy params, plus the value head when the state has one."""
  if "value_head" in state:
    return {"params": state["params"], "value_head": state["value_head"]}
  return state["params"]


def untrained(state: dict[str, Any]) -> dict[str, Any]:
  """The state's trees the objective reads but the optimiser never updates, by name, passed to the objective
  with the frozen models: {} for a full fine-tune."""
  return {}


def with_trainable(state: dict[str, Any], new: Any) -> dict[str, Any]:
  """`state` with the trees of `trainable(state)` replaced by `new`."""
  return {**state, **new} if "value_head" in state else {**state, "params": new}


def state_shardings(model_cfg: models.ModelConfig, optimizer: optax.GradientTransformation,
                    mesh: jax.sharding.Mesh, value_head: bool = False) -> dict[str, Any]:
  replicated = sharding.replicated(mesh)
  shardings = {"step": replicated,
               "params": sharding.logical_to_shardings(models.param_logical_axes(model_cfg), mesh)}
  abstract = {"params": jax.eval_shape(lambda: models.init_params(model_cfg, jax.random.key(0)))}
  if value_head:
    abstract["value_head"] = jax.eval_shape(lambda: models.init_value_head(model_cfg))
    shardings["value_head"] = jax.tree.map(lambda _: replicated, abstract["value_head"])
  abstract_opt = jax.eval_shape(optimizer.init, trainable(abstract))
  shardings["opt_state"] = optax.tree_map_params(optimizer, lambda _, s: s, abstract_opt, trainable(shardings),
                                                 transform_non_params=lambda _: replicated)
  return shardings


def init_train_state(model_cfg: models.ModelConfig, optimizer: optax.GradientTransformation,
                     mesh: jax.sharding.Mesh, seed: int, value_head: bool = False,
                     params: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
  """Returns (state, shardings), the state already laid out on the mesh; `params` (already placed) replace
  the random ones, which are then never drawn."""
  shardings = state_shardings(model_cfg, optimizer, mesh, value_head)

  def create(rng, params):
    state = {"step": jnp.zeros((), jnp.int32),
             "params": models.init_params(model_cfg, rng) if params is None else params}
    if value_head:
      state["value_head"] = models.init_value_head(model_cfg)
    return {**state, "opt_state": optimizer.init(trainable(state))}

  state = jax.jit(create, out_shardings=shardings)(jax.random.key(seed), params)
  return state, shardings


def starting_state(model_cfg: models.ModelConfig, optimizer: optax.GradientTransformation,
                   mesh: jax.sharding.Mesh, seed: int, record: dict, init_checkpoint: str = "",
                   value_head: bool = False, hf_path: str = "") -> tuple[dict[str, Any], dict[str, Any]]:
  """The state a fresh run starts from: `init_checkpoint`'s params (another run's workdir or checkpoints
  directory), else the weights of the Hugging Face directory `hf_path` (read one tensor at a time straight into
  their shardings), else random params from `seed`. The optimiser and any value head start anew."""
  shardings = state_shardings(model_cfg, optimizer, mesh, value_head)
  params = None
  if init_checkpoint:
    source = Checkpoints(find_checkpoints_dir(init_checkpoint))
    step = source.latest_step()
    if step is None:
      raise CheckpointError(f"config.init_checkpoint={init_checkpoint!r} holds no checkpoint; point it at a "
                            "run's --workdir or its checkpoints/ directory")
    check_record(source, step, record)
    like = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                        jax.eval_shape(lambda: models.init_params(model_cfg, jax.random.key(0))), shardings["params"])
    params = source.restore_params(step, like)
  elif hf_path:
    params = models.from_hf(hf_path, dtype=model_cfg.param_dtype, shardings=shardings["params"])[1]
  return init_train_state(model_cfg, optimizer, mesh, seed, value_head, params)


def run_record(model_cfg: models.ModelConfig, vocab_size: int, tokenizer_dir: str = "") -> dict:
  """What a checkpoint records about the model it holds: its architecture, the tokenizer's vocabulary, and
  where a Hugging Face tokenizer lives (rr.convert --to-hf copies its files next to the exported weights)."""
  record = {"model": model_cfg.architecture(), "vocab_size": vocab_size}
  if tokenizer_dir:
    record["tokenizer_dir"] = os.path.abspath(tokenizer_dir)
  return record


def check_record(checkpoints: Checkpoints, step: int, record: dict) -> None:
  """Stops when checkpoint `step` holds another architecture or vocabulary than `record` (runtime fields such
  as dtype or remat may differ: they do not change the params)."""
  got = checkpoints.read_record(step)
  try:
    got_model = models.ModelConfig(**got.get("model", {})).architecture()
  except (TypeError, ValueError):
    got_model = got.get("model")
  for key, have, want in (("model", got_model, record["model"]), ("vocab_size", got.get("vocab_size"),
                                                                   record["vocab_size"])):
    if have != want:
      raise CheckpointError(
          f"checkpoint {checkpoints.directory}/{step} was written with {key}={have}, but this run has "
          f"{key}={want}; use the config (model and tokenizer) that wrote it, or pass a new --workdir")


def restore_or_init(checkpoints: Checkpoints, record: dict, model_cfg: models.ModelConfig,
                    optimizer: optax.GradientTransformation, mesh: jax.sharding.Mesh, seed: int,
                    init_checkpoint: str = "", value_head: bool = False,
                    hf_path: str = "") -> tuple[dict[str, Any], dict[str, Any], int | None]:
  """Returns (state, shardings, resumed step or None): a run resumes from its own latest checkpoint,
  otherwise it starts as `starting_state` says."""
  latest = checkpoints.latest_step()
  if latest is None:
    state, shardings = starting_state(model_cfg, optimizer, mesh, seed, record, init_checkpoint, value_head,
                                      hf_path)
    return state, shardings, None
  shardings = state_shardings(model_cfg, optimizer, mesh, value_head)
  abstract = jax.eval_shape(lambda: init_train_state(model_cfg, optimizer, mesh, seed, value_head)[0])
  abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)
  check_record(checkpoints, latest, record)
  return checkpoints.restore(latest, abstract), shardings, latest


def open_run(workdir: str, config, model_cfg: models.ModelConfig, optimizer: optax.GradientTransformation,
             mesh: jax.sharding.Mesh, vocab_size: int, value_head: bool = False):
  """The checkpoints of a run in `workdir`, its record, and its state (resumed, or started afresh).

  Returns (checkpoints, record, state, shardings, resumed step or None).
  """
  os.makedirs(workdir, exist_ok=True)
  checkpoints = Checkpoints(os.path.join(workdir, "checkpoints"), keep=config.train.keep_checkpoints)
  tokenizer_dir = (config.tokenizer.path or config.model.hf_path) if config.tokenizer.kind == "hf" else ""
  record = run_record(model_cfg, vocab_size, tokenizer_dir)
  state, shardings, resumed = restore_or_init(checkpoints, record, model_cfg, optimizer, mesh, config.seed,
                                             config.init_checkpoint, value_head, config.model.hf_path)
  if resumed is not None:
    print(f"rr: resuming from {checkpoints.directory}/{resumed}", file=sys.stderr)
  return checkpoints, record, state, shardings, resumed

