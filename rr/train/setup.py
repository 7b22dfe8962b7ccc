"""Pieces every training loop builds from its config: the model config, the device mesh, the student's state
(restored or started) and the periodic greedy evaluation."""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

import jax
import numpy as np
import optax

from rr import models, sharding
from rr.config import ConfigError, save_run_config
from rr.eval import evaluate_accuracy


def count_params(params) -> int:
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(params)))


def build_model_config(config, vocab_size: int) -> models.ModelConfig:
  """The model a run trains: a named preset sized to the tokenizer's vocabulary, or the architecture of the
  Hugging Face directory config.model.hf_path (whose embedding table may have more rows than the tokenizer has
  ids: HF checkpoints often pad it, and the padding rows are simply never a target)."""
  runtime = dict(dtype=config.model.dtype, param_dtype=config.model.param_dtype,
                 embed_one_hot=config.model.embed_one_hot, remat=config.model.remat,
                 attention=config.model.attention)
  if config.model.hf_path:
    try:
      model_cfg = models.hf_io.config_from_hf(models.hf_io.read_config(config.model.hf_path))
    except models.HFCheckpointError as e:
      raise ConfigError(f"config.model.hf_path: {e}") from e
    if model_cfg.vocab_size < vocab_size:
      raise ConfigError(f"config.model.hf_path={config.model.hf_path!r} has vocab_size={model_cfg.vocab_size} "
                        f"embedding rows, fewer than the tokenizer's {vocab_size} ids; use the tokenizer that "
                        "came with the model (config.tokenizer.path='' reads the model directory's)")
    try:
      return dataclasses.replace(model_cfg, **runtime)
    except ValueError as e:
      raise ConfigError(f"config.model: {e}") from e
  try:
    return models.model_config(config.model.preset, vocab_size=vocab_size, **runtime)
  except ValueError as e:
    raise ConfigError(f"config.model: {e}") from e


def build_mesh(config, batch_size: int, batch_key: str = "config.train.batch_size") -> jax.sharding.Mesh:
  """The ("data", "fsdp", "tensor") mesh of config.mesh; the global batch must split evenly over the batch
  rule's axes (data and fsdp by default)."""
  try:
    mesh = sharding.make_mesh(config.mesh.data, config.mesh.fsdp, config.mesh.tensor)
  except ValueError as e:
    raise ConfigError(f"config.mesh: {e}") from e
  rules = sharding.rules_of(config)
  shards = sharding.batch_shards(mesh, rules)
  if batch_size % shards:
    sizes = " x ".join(f"config.mesh.{axis}={mesh.shape[axis]}" for axis in sharding.batch_axes(rules))
    raise ConfigError(f"{batch_key}={batch_size} is not divisible by the {shards} devices the batch splits over "
                      f"({sizes}, config.mesh.rules.batch={config.mesh.rules.batch!r}); change one of them")
  return mesh


@dataclasses.dataclass
class Student:
  """The model a run trains, its optimiser and learning-rate schedule over `total_steps`, and its state: restored
  from the workdir's checkpoints (`resumed` = that step) or started fresh or from config.init_checkpoint."""
  model: models.Decoder
  optimizer: optax.GradientTransformation
  schedule: Callable[[int], Any]
  checkpoints: Any
  record: dict
  state: dict
  shardings: dict
  resumed: int | None


def open_student(config, workdir: str, model_cfg: models.ModelConfig, mesh, vocab_size: int,
                 total_steps: int) -> Student:
  """The student of a supervised-style run (one optimiser step per loop step), with config.json written."""
  from rr.train.optimizer import learning_rate_schedule, make_optimizer
  from rr.train.state import open_run, trained_dtype

  optimizer = make_optimizer(config.optim, total_steps, trained_dtype(config, model_cfg))
  checkpoints, record, state, shardings, resumed = open_run(workdir, config, model_cfg, optimizer, mesh, vocab_size)
  if jax.process_index() == 0:
    save_run_config(config, workdir)
  return Student(models.Decoder(model_cfg), optimizer, learning_rate_schedule(config.optim, total_steps), checkpoints,
                 record, state, shardings, resumed)


def greedy_evaluation(config, sampler, tokenizer, examples) -> Callable[[Any], dict]:
  """`evaluate(params) -> metrics`: held-out greedy accuracy on `examples` (rr.eval.evaluate_accuracy), timed."""

  def evaluate(params) -> dict:
    if not examples:
      return {}
    t = time.time()
    metrics = evaluate_accuracy(sampler, params, tokenizer, examples, max_new_tokens=config.eval.max_new_tokens,
                                batch_size=config.eval.batch_size)
    return {**metrics, "eval/seconds": time.time() - t}

  return evaluate
