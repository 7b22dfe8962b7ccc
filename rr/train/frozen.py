"""Frozen models a train step reads but never updates: a reference policy, a teacher, a scoring model.

One is an input of the step, never part of the student's state, so it is never saved with the student's
checkpoints and needs no optimiser state or float32 master copy. It may have another size than the student (it
gets its own ModelConfig and its own shardings on the same mesh), but it must share the student's tokenizer:
token ids mean the same text to both, or its log-probs are of other words. That is checked from the rr
checkpoint's record or the Hugging Face config.json, before any array is read.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax

from rr import models, sharding
from rr.checkpoint import CheckpointError, Checkpoints, directory_kind, find_checkpoints_dir
from rr.config import ConfigError

FROZEN_DTYPES = ("float32", "bfloat16")


@dataclasses.dataclass(frozen=True, eq=False)  # eq=False: never compares (or hashes) the arrays
class Frozen:
  """A loaded frozen model: its config, its params already on the mesh, their shardings, and the module."""
  model_cfg: models.ModelConfig
  params: Any
  shardings: Any
  model: models.Decoder


def load_frozen(path: str, mesh: jax.sharding.Mesh, *, vocab_size: int, dtype: str = "float32",
                what: str = "config.rl.reference") -> Frozen:
  """The model at `path`: an rr run's workdir or its checkpoints/ directory (the newest step's params), or a
  Hugging Face model directory (config.json + safetensors). `vocab_size` is the student's tokenizer's; `dtype`
  is the params' (and compute) dtype; `what` names the config key in error messages."""
  if dtype not in FROZEN_DTYPES:
    raise ConfigError(f"{what}: dtype={dtype!r} is not one of {FROZEN_DTYPES}")
  if not os.path.isdir(path):
    raise ConfigError(f"{what}={path!r} is not a directory; point it at an rr run's --workdir (or its "
                      "checkpoints/ directory) or at a local Hugging Face model directory")
  if directory_kind(path) == "hf":
    return _load_hf(path, mesh, vocab_size, dtype, what)
  return _load_rr(path, mesh, vocab_size, dtype, what)


def _load_rr(path: str, mesh, vocab_size: int, dtype: str, what: str) -> Frozen:
  checkpoints = Checkpoints(find_checkpoints_dir(path), read_only=True)
  try:
    step = checkpoints.latest_step()
    if step is None:
      raise CheckpointError(f"{what}={path!r} holds no rr checkpoint and is not a Hugging Face model directory "
                            "(no config.json); point it at a run's --workdir or checkpoints/ directory that has "
                            "a saved step, or at a Hugging Face model directory")
    where = f"{checkpoints.directory}/{step}"
    record = checkpoints.read_record(step)
    if record.get("vocab_size") != vocab_size:
      raise CheckpointError(
          f"{what}={path!r}: checkpoint {where} was trained with a tokenizer of vocab_size="
          f"{record.get('vocab_size')}, but this run's tokenizer has vocab_size={vocab_size}; a frozen model must "
          "share the run's tokenizer, so use the tokenizer that wrote it (config.tokenizer) or another "
          f"{what} trained with this one")
    try:
      cfg = models.ModelConfig(**{**record["model"], "dtype": dtype, "param_dtype": dtype})
    except (KeyError, TypeError, ValueError) as e:
      raise CheckpointError(f"{what}={path!r}: checkpoint {where} has an unreadable model record ({e}); was it "
                            "written by rr?") from e
    shardings = sharding.logical_to_shardings(models.param_logical_axes(cfg), mesh)
    like = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, cfg.weight_dtype, sharding=s),
                        jax.eval_shape(lambda: models.init_params(cfg, jax.random.key(0))), shardings)
    params = checkpoints.policy_params(step, like)  # a LoRA run's merged
  finally:
    checkpoints.close()
  return Frozen(cfg, params, shardings, models.Decoder(cfg))


def _directory_vocab(path: str) -> int | None:
  """The vocabulary of a Hugging Face directory's own tokenizer; None when it holds no tokenizer files."""
  from rr.data import DataError, HFTokenizer

  if not any(os.path.isfile(os.path.join(path, name)) for name in ("tokenizer.json", "tokenizer_config.json")):
    return None
  try:
    return HFTokenizer.from_dir(path).vocab_size
  except DataError as e:
    raise ConfigError(f"the frozen model's directory {path!r} has unreadable tokenizer files: {e}") from e


def _load_hf(path: str, mesh, vocab_size: int, dtype: str, what: str) -> Frozen:
  try:
    cfg = models.hf_io.config_from_hf(models.hf_io.read_config(path), dtype)
  except models.HFCheckpointError as e:
    raise ConfigError(f"{what}={path!r}: {e}") from e
  if cfg.vocab_size < vocab_size:  # more rows are fine: HF checkpoints pad the table, padding is never a target
    raise ConfigError(f"{what}={path!r} has vocab_size={cfg.vocab_size} embedding rows, fewer than this run's "
                      f"tokenizer's vocab_size={vocab_size} ids; a frozen model must share the run's tokenizer, "
                      "so use the tokenizer that came with the model or another model made for this tokenizer")
  own = _directory_vocab(path)  # a directory with its tokenizer says which one it was trained with
  if own is not None and own != vocab_size:
    raise ConfigError(f"{what}={path!r} comes with a tokenizer of {own} ids, and this run's tokenizer has "
                      f"vocab_size={vocab_size}; a frozen model must share the run's tokenizer: train with that "
                      "tokenizer (config.tokenizer.kind=hf, config.tokenizer.path=the directory) or pick a model "
                      "made for this one")
  shardings = sharding.logical_to_shardings(models.param_logical_axes(cfg), mesh)
  try:
    params = models.from_hf(path, dtype=dtype, shardings=shardings)[1]
  except models.HFCheckpointError as e:
    raise ConfigError(f"{what}={path!r}: {e}") from e
  return Frozen(cfg, params, shardings, models.Decoder(cfg))
