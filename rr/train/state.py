"""The train state pytree `{"step", "params", "opt_state"}`, created directly in its shardings.

A PPO run (`value_head=True`) adds `"value_head"` (rr.models.init_value_head, replicated): it sits beside
the policy params, while one optimiser state covers both (`trainable`), so the global-norm clip sees the whole
gradient.

A LoRA run (config.lora.rank > 0, docs/methods.md "LoRA") adds `"lora"`, float32 adapters (rr.models.lora), and
`"lora_scale"` (alpha / rank, a replicated scalar, so the step and every reader of a checkpoint merge alike);
`"params"` is then the frozen base in config.lora.base_dtype. The optimiser updates the adapters (and a value
head) only; the step hands the base and the scale to the objective as untrained trees, whose Forward merges them.
What samples or evaluates the policy reads `policy_params(state)`, what reads a checkpoint `Checkpoints.policy_params`:
both give the merged weights of a LoRA state, the params of any other.

A run whose reward needs a slow copy of the policy (RLP's info_gain, `ema=True`) adds `"policy_ema"`: a float32
exponential moving average of `policy_params(state)`, started equal to them and sharded like the params. No optimiser
touches it; `make_ema_step` moves it after each update. It lives in the state, so each checkpoint saves it with the
params it averages and a resumed run continues with the same EMA.

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

from rr import files, models, sharding
from rr.checkpoint import CheckpointError, Checkpoints, find_checkpoints_dir
from rr.registry import split_names

# The untrained trees of a LoRA state, by the names the objective's Forward reads them under.
LORA_BASE, LORA_SCALE = "student_base", "lora_scale"
POLICY_EMA = "policy_ema"  # the state's EMA of the policy params (info_gain's no-thought baseline), when it has one


@dataclasses.dataclass(frozen=True)
class LoraSettings:
  """config.lora of a run with adapters: what the state is built from and its checkpoints record."""
  rank: int
  alpha: float
  targets: tuple[str, ...]
  base_dtype: str

  @property
  def scale(self) -> float:
    return self.alpha / self.rank

  def record(self) -> dict:
    return {"rank": self.rank, "alpha": self.alpha, "targets": list(self.targets)}


def lora_settings(config) -> LoraSettings | None:
  """The run's LoRA settings, or None when config.lora.rank is 0 (every weight trains)."""
  lora = config.lora
  if lora.rank == 0:
    return None
  return LoraSettings(lora.rank, float(lora.alpha), tuple(split_names(lora.targets)), lora.base_dtype)


def trained_dtype(config, model_cfg: models.ModelConfig) -> str:
  """The storage dtype of what the optimiser updates (rr.train.optimizer's float32 master applies below float32):
  the params', or float32 for LoRA adapters."""
  return "float32" if config.lora.rank else model_cfg.param_dtype


def _trained_keys(state: dict[str, Any]) -> tuple[str, ...]:
  return ("lora" if "lora" in state else "params",) + (("value_head",) if "value_head" in state else ())


def trainable(state: dict[str, Any]) -> Any:
  """What the optimiser updates: the policy params (a LoRA state's adapters instead), plus the value head when
  the state has one; the bare params for a plain full fine-tune, else a dict of those state trees by name."""
  keys = _trained_keys(state)
  return state["params"] if keys == ("params",) else {key: state[key] for key in keys}


def untrained(state: dict[str, Any]) -> dict[str, Any]:
  """The state's trees the objective reads but the optimiser never updates, by name, passed to the objective
  with the frozen models: a LoRA state's base and scale, {} for a full fine-tune."""
  if "lora" not in state:
    return {}
  return {LORA_BASE: state["params"], LORA_SCALE: state["lora_scale"]}


def with_trainable(state: dict[str, Any], new: Any) -> dict[str, Any]:
  """`state` with the trees of `trainable(state)` replaced by `new`."""
  return {**state, "params": new} if _trained_keys(state) == ("params",) else {**state, **new}


def policy_params(state: dict[str, Any]) -> Any:
  """The params the policy samples and is evaluated with: a LoRA state's base merged with its adapters (float32
  merged kernels, which the model casts at use as the train step's merge in the compute dtype), else
  state["params"] itself. Jittable."""
  return models.state_params(state)


def state_shardings(model_cfg: models.ModelConfig, optimizer: optax.GradientTransformation,
                    mesh: jax.sharding.Mesh, value_head: bool = False,
                    lora: LoraSettings | None = None, ema: bool = False) -> dict[str, Any]:
  replicated = sharding.replicated(mesh)
  shardings = {"step": replicated,
               "params": sharding.logical_to_shardings(models.param_logical_axes(model_cfg), mesh)}
  if ema:
    shardings[POLICY_EMA] = shardings["params"]
  abstract = {"params": jax.eval_shape(lambda: models.init_params(model_cfg, jax.random.key(0)))}
  if value_head:
    abstract["value_head"] = jax.eval_shape(lambda: models.init_value_head(model_cfg))
    shardings["value_head"] = jax.tree.map(lambda _: replicated, abstract["value_head"])
  if lora is not None:
    abstract["lora"] = jax.eval_shape(lambda: models.init_adapters(model_cfg, lora.targets, lora.rank,
                                                                   jax.random.key(0)))
    shardings["lora"] = sharding.logical_to_shardings(models.adapter_logical_axes(model_cfg, lora.targets), mesh)
    shardings["lora_scale"] = replicated
  abstract_opt = jax.eval_shape(optimizer.init, trainable(abstract))
  shardings["opt_state"] = optax.tree_map_params(optimizer, lambda _, s: s, abstract_opt, trainable(shardings),
                                                 transform_non_params=lambda _: replicated)
  return shardings


def base_config(model_cfg: models.ModelConfig, lora: LoraSettings | None) -> models.ModelConfig:
  """The model config the state's params are stored in: a LoRA run's frozen base in config.lora.base_dtype."""
  return model_cfg if lora is None else dataclasses.replace(model_cfg, param_dtype=lora.base_dtype)


def init_train_state(model_cfg: models.ModelConfig, optimizer: optax.GradientTransformation,
                     mesh: jax.sharding.Mesh, seed: int, value_head: bool = False,
                     params: Any = None, lora: LoraSettings | None = None,
                     ema: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
  """Returns (state, shardings), the state already laid out on the mesh; `params` (already placed) replace
  the random ones, which are then never drawn. With `lora`, fresh adapters (B = 0) sit on them; with `ema`, the
  policy EMA starts as a float32 copy of the starting policy."""
  shardings = state_shardings(model_cfg, optimizer, mesh, value_head, lora, ema)

  def create(rng, params):
    state = {"step": jnp.zeros((), jnp.int32),
             "params": models.init_params(base_config(model_cfg, lora), rng) if params is None else params}
    if value_head:
      state["value_head"] = models.init_value_head(model_cfg)
    if lora is not None:
      state["lora"] = models.init_adapters(model_cfg, lora.targets, lora.rank, jax.random.fold_in(rng, 1))
      state["lora_scale"] = jnp.asarray(lora.scale, jnp.float32)
    if ema:
      state[POLICY_EMA] = jax.tree.map(lambda x: x.astype(jnp.float32), policy_params(state))
    return {**state, "opt_state": optimizer.init(trainable(state))}

  state = jax.jit(create, out_shardings=shardings)(jax.random.key(seed), params)
  return state, shardings


def starting_state(model_cfg: models.ModelConfig, optimizer: optax.GradientTransformation,
                   mesh: jax.sharding.Mesh, seed: int, record: dict, init_checkpoint: str = "",
                   value_head: bool = False, hf_path: str = "",
                   lora: LoraSettings | None = None, ema: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
  """The state a fresh run starts from: `init_checkpoint`'s params (another run's workdir or checkpoints
  directory; a LoRA run's merged), else the weights of the Hugging Face directory `hf_path` (read one tensor at a
  time straight into their shardings), else random params from `seed`. The optimiser, any value head and any
  adapters start anew; with `lora` those params are the frozen base, stored in its base dtype."""
  shardings = state_shardings(model_cfg, optimizer, mesh, value_head, lora)
  stored = base_config(model_cfg, lora)
  params = None
  if init_checkpoint:
    source = Checkpoints(find_checkpoints_dir(init_checkpoint))
    step = source.latest_step()
    if step is None:
      raise CheckpointError(f"config.init_checkpoint={init_checkpoint!r} holds no checkpoint; point it at a "
                            "run's --workdir or its checkpoints/ directory")
    check_record(source, step, record)
    like = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                        jax.eval_shape(lambda: models.init_params(stored, jax.random.key(0))), shardings["params"])
    params = source.policy_params(step, like)
  elif hf_path:
    params = models.from_hf(hf_path, dtype=stored.param_dtype, shardings=shardings["params"])[1]
  return init_train_state(model_cfg, optimizer, mesh, seed, value_head, params, lora, ema)


def run_record(model_cfg: models.ModelConfig, vocab_size: int, tokenizer_dir: str = "",
               lora: LoraSettings | None = None) -> dict:
  """What a checkpoint records about the model it holds: its architecture, the tokenizer's vocabulary, where a
  Hugging Face tokenizer lives (rr.convert --to-hf copies its files next to the exported weights), and a LoRA
  run's adapters (rank, alpha, targets: Checkpoints.policy_params merges a checkpoint that has them)."""
  record = {"model": model_cfg.architecture(), "vocab_size": vocab_size}
  if tokenizer_dir:
    record["tokenizer_dir"] = os.path.abspath(tokenizer_dir)
  if lora is not None:
    record["lora"] = lora.record()
  return record


def check_record(checkpoints: Checkpoints, step: int, record: dict, resume: bool = False) -> None:
  """Stops when checkpoint `step` holds another architecture or vocabulary than `record` (runtime fields such
  as dtype or remat may differ: they do not change the params), or, for a run resuming its own checkpoint
  (`resume`), other LoRA adapters: a run may start from any checkpoint's merged params, adapters or not."""
  got = checkpoints.read_record(step)
  try:
    got_model = models.ModelConfig(**got.get("model", {})).architecture()
  except (TypeError, ValueError):
    got_model = got.get("model")
  compared = [("model", got_model, record["model"]), ("vocab_size", got.get("vocab_size"), record["vocab_size"])]
  if resume:
    compared.append(("lora", got.get("lora"), record.get("lora")))
  for key, have, want in compared:
    if have != want:
      raise CheckpointError(
          f"checkpoint {checkpoints.directory}/{step} was written with {key}={have}, but this run has "
          f"{key}={want}; use the config (model, tokenizer and lora) that wrote it, or pass a new --workdir")


def restore_or_init(checkpoints: Checkpoints, record: dict, model_cfg: models.ModelConfig,
                    optimizer: optax.GradientTransformation, mesh: jax.sharding.Mesh, seed: int,
                    init_checkpoint: str = "", value_head: bool = False, hf_path: str = "",
                    lora: LoraSettings | None = None,
                    ema: bool = False) -> tuple[dict[str, Any], dict[str, Any], int | None]:
  """Returns (state, shardings, resumed step or None): a run resumes from its own latest checkpoint (a LoRA
  run: base and adapters both; an `ema` run its policy EMA), otherwise it starts as `starting_state` says."""
  latest = checkpoints.latest_step()
  if latest is None:
    state, shardings = starting_state(model_cfg, optimizer, mesh, seed, record, init_checkpoint, value_head,
                                      hf_path, lora, ema)
    return state, shardings, None
  shardings = state_shardings(model_cfg, optimizer, mesh, value_head, lora, ema)
  abstract = jax.eval_shape(lambda: init_train_state(model_cfg, optimizer, mesh, seed, value_head, lora=lora,
                                                     ema=ema)[0])
  abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)
  check_record(checkpoints, latest, record, resume=True)
  return checkpoints.restore(latest, abstract), shardings, latest


def open_run(workdir: str, config, model_cfg: models.ModelConfig, optimizer: optax.GradientTransformation,
             mesh: jax.sharding.Mesh, vocab_size: int, value_head: bool = False, ema: bool = False):
  """The checkpoints of a run in `workdir`, its record, and its state (resumed, or started afresh; `ema`: with
  the policy EMA).

  Returns (checkpoints, record, state, shardings, resumed step or None).
  """
  files.makedirs(workdir)
  checkpoints = Checkpoints(os.path.join(workdir, "checkpoints"), keep=config.train.keep_checkpoints)
  tokenizer_dir = (config.tokenizer.path or config.model.hf_path) if config.tokenizer.kind == "hf" else ""
  lora = lora_settings(config)
  record = run_record(model_cfg, vocab_size, tokenizer_dir, lora)
  state, shardings, resumed = restore_or_init(checkpoints, record, model_cfg, optimizer, mesh, config.seed,
                                             config.init_checkpoint, value_head, config.model.hf_path, lora, ema)
  if resumed is not None:
    print(f"rr: resuming from {checkpoints.directory}/{resumed}", file=sys.stderr)
  return checkpoints, record, state, shardings, resumed


def make_ema_step(decay: float, shardings: dict[str, Any]):
  """`ema_step(state) -> state` with state["policy_ema"] <- decay * ema + (1 - decay) * policy_params(state), in
  float32, jitted with the state donated (RLP's no-thought baseline, tau = decay). The rest of the state passes
  through unchanged."""

  def ema_step(state):
    moved = jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p.astype(jnp.float32), state[POLICY_EMA],
                         policy_params(state))
    return {**state, POLICY_EMA: moved}

  return jax.jit(ema_step, in_shardings=(shardings,), out_shardings=shardings, donate_argnums=0)
