"""Top-k teacher logits cached on disk (config.distill.logit_cache): the kd term's teacher, run once per data set.

For every train example's SFT row (rr.data.SFTBatches.rows, in example order) the cache holds the teacher's k
largest logits over the tokenizer's vocabulary, and their token ids, at each of the L = data.max_len positions:
  PATH/ids.npy     int32   [N, L, k]
  PATH/logits.npy  float32 [N, L, k]  at temperature 1 (the kd term scales them by distill.temperature)
  PATH/meta.json   teacher, teacher_dtype, top_k, vocab_size, max_len, num_rows and a sha256 fingerprint of the
                   encoded rows (tokens and positions)
Training reads each step's rows from memory-mapped arrays, so the cache may be larger than memory. It is built
in a sibling temporary directory that is renamed into place when complete, so PATH is a whole cache or absent.
A cache whose metadata does not match the run's is refused, and is never overwritten.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sys
import tempfile

import jax
import numpy as np
from tqdm import tqdm

from rr.config import ConfigError
from rr.data import SFTBatches
from rr.models import shared_prompt_forward
from rr.sharding import batch_sharding

FORMAT = 1
_IDENTITY = ("teacher", "teacher_dtype")  # compared only when the run names a teacher: "" trusts the cache's
_FINGERPRINT_CHUNK = 1024  # examples laid out at a time while hashing


@dataclasses.dataclass(frozen=True)
class LogitCache:
  ids: np.ndarray  # [N, L, k] int32, memory-mapped
  logits: np.ndarray  # [N, L, k] float32, memory-mapped

  def rows(self, indices: np.ndarray) -> dict[str, np.ndarray]:
    """The TrainBatch fields of the rows of examples `indices` (rr.data.SFTBatches.example_indices)."""
    return {"teacher_topk_ids": np.asarray(self.ids[indices]), "teacher_topk_logits": np.asarray(self.logits[indices])}


def metadata(config, batches: SFTBatches, vocab_size: int) -> dict:
  """What a cache of this run's rows and teacher must record."""
  digest = hashlib.sha256()
  for start in range(0, batches.num_examples, _FINGERPRINT_CHUNK):
    rows = batches.rows(range(start, min(start + _FINGERPRINT_CHUNK, batches.num_examples)))
    digest.update(rows["tokens"].tobytes())
    digest.update(rows["positions"].tobytes())
  teacher = config.distill.teacher
  return {"format": FORMAT, "teacher": os.path.abspath(teacher) if teacher else "",
          "teacher_dtype": config.distill.teacher_dtype, "top_k": config.distill.top_k, "vocab_size": vocab_size,
          "max_len": batches.max_len, "num_rows": batches.num_examples, "fingerprint": digest.hexdigest()}


def is_built(path: str, want: dict) -> bool:
  """True when a cache matching `want` is at `path`, False when nothing is there; a ConfigError for anything
  else (another run's cache, a file that is no cache), which is left as it is."""
  if not os.path.exists(path):
    return False
  meta_path = os.path.join(path, "meta.json")
  try:
    with open(meta_path) as f:
      have = json.load(f)
  except (OSError, ValueError) as e:
    raise ConfigError(f"config.distill.logit_cache={path!r} exists but is not a teacher logit cache ({meta_path} "
                      f"unreadable: {e}); rr never overwrites it: point config.distill.logit_cache at a new "
                      "path") from e
  keys = [k for k in want if want["teacher"] or k not in _IDENTITY]
  differ = [f"{k}: cache {have.get(k)!r}, this run {want[k]!r}" for k in keys if have.get(k) != want[k]]
  if differ:
    raise ConfigError(f"config.distill.logit_cache={path!r} holds the top-k logits of another teacher, data or "
                      f"settings ({'; '.join(differ)}); it is never overwritten: point config.distill.logit_cache "
                      "at a new path (or delete that directory yourself)")
  return True


def build(path: str, want: dict, model, params, batches: SFTBatches, mesh: jax.sharding.Mesh,
          rows_per_call: int) -> None:
  """Runs the teacher (`model`, `params` on `mesh`) over every row and writes the cache at `path` atomically.
  `rows_per_call` must divide over the mesh's data axis (the run's batch size does); the last call is padded."""
  n, width, k = batches.num_examples, batches.max_len, want["top_k"]
  vocab_size = want["vocab_size"]

  @jax.jit
  def top_k(params, tokens, positions):
    logits, _ = shared_prompt_forward(model, params, tokens, positions)
    values, ids = jax.lax.top_k(logits[..., :vocab_size].astype(np.float32), k)
    return ids.astype(np.int32), values

  parent = os.path.dirname(os.path.abspath(path))
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=os.path.basename(os.path.abspath(path)) + ".building-", dir=parent)
  put = lambda a: jax.device_put(a, batch_sharding(mesh))
  try:
    ids = np.lib.format.open_memmap(os.path.join(tmp, "ids.npy"), "w+", np.int32, (n, width, k))
    logits = np.lib.format.open_memmap(os.path.join(tmp, "logits.npy"), "w+", np.float32, (n, width, k))
    for start in tqdm(range(0, n, rows_per_call), desc="teacher logit cache", file=sys.stderr, mininterval=2.0):
      indices = np.arange(start, min(start + rows_per_call, n))
      call = np.concatenate([indices, np.zeros(rows_per_call - len(indices), np.int64)])  # one shape, one compile
      rows = batches.rows(call)
      chunk_ids, chunk_logits = top_k(params, put(rows["tokens"]), put(rows["positions"]))
      ids[indices], logits[indices] = np.asarray(chunk_ids)[:len(indices)], np.asarray(chunk_logits)[:len(indices)]
    ids.flush()
    logits.flush()
    del ids, logits
    with open(os.path.join(tmp, "meta.json"), "w") as f:
      json.dump(want, f, indent=1)
    os.rename(tmp, path)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise


def load(path: str, want: dict) -> LogitCache:
  """The cache at `path` (checked by is_built), memory-mapped."""
  shape = (want["num_rows"], want["max_len"], want["top_k"])
  try:
    cache = LogitCache(np.load(os.path.join(path, "ids.npy"), mmap_mode="r"),
                       np.load(os.path.join(path, "logits.npy"), mmap_mode="r"))
  except (OSError, ValueError) as e:
    raise ConfigError(f"config.distill.logit_cache={path!r}: its arrays are unreadable ({e}); point "
                      "config.distill.logit_cache at a new path to build a fresh cache") from e
  if cache.ids.shape != shape or cache.logits.shape != shape:
    raise ConfigError(f"config.distill.logit_cache={path!r}: arrays of shape {cache.ids.shape} and "
                      f"{cache.logits.shape}, not the {shape} its meta.json says; point config.distill.logit_cache "
                      "at a new path to build a fresh cache")
  return cache
