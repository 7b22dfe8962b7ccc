"""Sampler: token-id prompts in, SampleOutput (numpy) out.

The host side of sampling: pad each batch of prompts on the left up to a prompt
bucket, pad the number of prompts up to a batch bucket (dummy rows, discarded),
run the jitted `decode.generate`, and put the rows back in the caller's order.
Buckets keep the number of compilations small: a new prompt length or count
inside the same buckets reuses the compiled function (`num_compilations` counts).

Rows are prompt-major: row i * num_samples + j is sample j of prompt i.

Under a mesh the params are read in the decode rules' shardings (rr.sharding.decode_rules: the training rules
less fsdp), so a token-by-token decode never gathers fsdp-sharded params; params that arrive in the training
shardings are resharded once per call, before the jitted decode. Prompts split over the batch rule's axes.
"""

import dataclasses
from typing import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from rr import sharding
from rr.models import ModelConfig, param_logical_axes
from rr.sampler import decode

DEFAULT_PROMPT_BUCKETS = (16, 32, 64, 128, 256, 512, 1024)
# Powers of two with 1.5x steps in between: at most ~33% dummy rows above 32 prompts.
DEFAULT_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 48, 64, 96, 128, 192, 256, 384, 512)


@dataclasses.dataclass(frozen=True)
class SampleOutput:
  """Numpy arrays, N = num_prompts * num_samples rows, prompt-major."""

  tokens: np.ndarray  # int32 [N, max_new_tokens]; pad_id after eos (eos included)
  lengths: np.ndarray  # int32 [N]; generated tokens including eos
  logprobs: np.ndarray  # float32 [N, max_new_tokens]; under the sampling distribution, 0 after end
  model_logprobs: np.ndarray  # float32 [N, max_new_tokens]; raw model at temperature 1, 0 after end
  prompt_index: np.ndarray  # int32 [N]; which prompt each row continues


class Sampler:
  """Samples continuations of token-id prompts with a Decoder's params.

  mesh: optional rr.sharding mesh; prompts (and samples) are sharded over the batch
    rule's axes (the rules active when the Sampler is built) and batch buckets are
    rounded up to a multiple of the devices they span.
  param_shardings: where the decode reads params under the mesh (a Sharding or a
    pytree of them). Default: the decode rules' shardings of model_cfg's params.
    Params elsewhere are moved there once per call. Ignored without a mesh.
  Prompts beyond the largest batch bucket (counted in rows = prompts * num_samples)
  run as several batches, grouped by length so short prompts are not padded to long ones.
  """

  def __init__(self, model_cfg: ModelConfig, eos_id: int, pad_id: int, mesh: Mesh | None = None,
               prompt_buckets: Sequence[int] = DEFAULT_PROMPT_BUCKETS,
               batch_buckets: Sequence[int] = DEFAULT_BATCH_BUCKETS, param_shardings=None):
    if not prompt_buckets or not batch_buckets:
      raise ValueError("Sampler needs at least one prompt bucket and one batch bucket")
    # Sampling never differentiates, so it always gathers embedding rows: the one-hot matmul is only
    # worth its FLOPs for a training step's backward on XLA:CPU (a scatter otherwise). Same params.
    self.model_cfg = dataclasses.replace(model_cfg, embed_one_hot=False)
    self.eos_id = int(eos_id)
    self.pad_id = int(pad_id)
    self.mesh = mesh
    self.prompt_buckets = tuple(sorted(int(b) for b in prompt_buckets))
    self.batch_buckets = tuple(sorted(int(b) for b in batch_buckets))
    if mesh is not None:
      rules = sharding.decode_rules(sharding.active_rules())
      self._batch_sharding = sharding.batch_sharding(mesh, rules)
      self._batch_shards = sharding.batch_shards(mesh, rules)
      self._replicated = sharding.replicated(mesh)
      if param_shardings is None:
        param_shardings = sharding.logical_to_shardings(param_logical_axes(self.model_cfg), mesh, rules)
    else:
      self._batch_shards = 1
    self.param_shardings = param_shardings
    self._jitted = {}
    self.num_compilations = 0  # traces of decode.generate, i.e. compilations

  def __call__(self, params, prompts: Sequence[Sequence[int]], *, max_new_tokens: int, strategy,
               rng: jax.Array | None = None, num_samples: int = 1) -> SampleOutput:
    """Samples num_samples continuations of up to max_new_tokens tokens per prompt.

    rng may be None for deterministic strategies (Greedy).
    """
    prompts = [np.asarray(p, dtype=np.int64).reshape(-1) for p in prompts]
    self._check(prompts, max_new_tokens, num_samples)
    if rng is None:
      rng = jax.random.PRNGKey(0)
    params = self._place_params(params)
    fn = self._generate_fn(strategy, int(max_new_tokens), int(num_samples))

    lengths = np.array([len(p) for p in prompts])
    prompts_per_batch = max(1, self.batch_buckets[-1] // num_samples)
    order = np.argsort(lengths, kind="stable")
    results = []
    for start in range(0, len(prompts), prompts_per_batch):
      ids = order[start:start + prompts_per_batch]
      inputs = self._place(self._pack([prompts[i] for i in ids], ids))
      results.append((ids, fn(params, *inputs, rng)))

    n_rows = len(prompts) * num_samples
    out = {"tokens": np.full((n_rows, max_new_tokens), self.pad_id, np.int32),
           "logprobs": np.zeros((n_rows, max_new_tokens), np.float32),
           "model_logprobs": np.zeros((n_rows, max_new_tokens), np.float32),
           "lengths": np.zeros((n_rows,), np.int32)}
    for ids, result in results:  # dispatch all batches first, then wait on the host
      rows = (ids[:, None] * num_samples + np.arange(num_samples)[None, :]).reshape(-1)
      for name, value in self._fetch(result).items():
        out[name][rows] = np.asarray(value)[:len(rows)]
    prompt_index = np.repeat(np.arange(len(prompts), dtype=np.int32), num_samples)
    return SampleOutput(prompt_index=prompt_index, **out)

  def _check(self, prompts, max_new_tokens, num_samples):
    if not prompts:
      raise ValueError("Sampler got no prompts")
    if max_new_tokens < 1:
      raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if num_samples < 1:
      raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    vocab = self.model_cfg.vocab_size
    for i, p in enumerate(prompts):
      if len(p) == 0:
        raise ValueError(f"prompt {i} is empty; every prompt needs at least one token")
      if len(p) > self.prompt_buckets[-1]:
        raise ValueError(f"prompt {i} has {len(p)} tokens, more than the largest prompt bucket "
                         f"{self.prompt_buckets[-1]}; add a larger bucket to prompt_buckets")
      if p.min() < 0 or p.max() >= vocab:
        raise ValueError(f"prompt {i} has token ids outside [0, {vocab}) (the model's vocab_size): "
                         f"min {p.min()}, max {p.max()}")

  def _pack(self, prompts: list[np.ndarray], prompt_ids: np.ndarray):
    """Left-pads prompts into bucket-shaped arrays: tokens, positions (-1 on pads), ids, real."""
    prompt_len = _bucket(max(len(p) for p in prompts), self.prompt_buckets)
    batch = _bucket(len(prompts), self.batch_buckets)
    batch = -(-batch // self._batch_shards) * self._batch_shards
    tokens = np.full((batch, prompt_len), self.pad_id, np.int32)
    positions = np.full((batch, prompt_len), -1, np.int32)
    ids = np.zeros((batch,), np.int32)
    real = np.zeros((batch,), bool)
    for row, (p, i) in enumerate(zip(prompts, prompt_ids)):
      tokens[row, prompt_len - len(p):] = p
      positions[row, prompt_len - len(p):] = np.arange(len(p))
      ids[row], real[row] = i, True
    # Dummy rows get a one-token prompt so no query is left without a visible key.
    positions[len(prompts):, -1] = 0
    return tokens, positions, ids, real

  def _place(self, arrays):
    """Host arrays onto the mesh's batch axes. Every process holds the same prompts, so each
    builds the global array from its own copy (this also works with several processes)."""
    if self.mesh is None:
      return arrays
    return tuple(jax.make_array_from_callback(a.shape, self._batch_sharding, lambda index, a=a: a[index])
                 for a in arrays)

  def _fetch(self, result):
    """Device results to host numpy; with several processes, gathered from all of them."""
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils
      return multihost_utils.process_allgather(result, tiled=True)
    return jax.device_get(result)

  def _place_params(self, params):
    """Params in the decode shardings (a no-op for those already there, e.g. on a mesh without fsdp), moved
    once per call: jit takes an argument only in the sharding it was compiled for."""
    if self.mesh is None:
      return params
    return jax.device_put(params, self.param_shardings)

  def _generate_fn(self, strategy, max_new_tokens: int, num_samples: int):
    """decode.generate jitted for these static settings (jax.jit caches each bucket shape)."""
    key = (strategy, max_new_tokens, num_samples)
    if key not in self._jitted:
      def traced(params, tokens, positions, prompt_ids, real, rng):
        self.num_compilations += 1  # runs only while tracing
        return decode.generate(
            params, tokens, positions, prompt_ids, real, rng, cfg=self.model_cfg,
            strategy=strategy, max_new_tokens=max_new_tokens, num_samples=num_samples,
            eos_id=self.eos_id, pad_id=self.pad_id, constrain=self._constrain)
      if self.mesh is None:
        self._jitted[key] = jax.jit(traced)
      else:
        batch = self._batch_sharding
        self._jitted[key] = jax.jit(
            traced, in_shardings=(self.param_shardings, batch, batch, batch, batch, self._replicated),
            out_shardings=batch)
    return self._jitted[key]

  def _constrain(self, tree):
    """Shards every batch-leading leaf's rows over the batch axes (scalars replicated), leaving its other
    dimensions to XLA (a cache's kv heads stay split over tensor); no-op without a mesh."""
    if self.mesh is None:
      return tree
    rows = self._batch_sharding.spec[0]
    placed = lambda x: NamedSharding(self.mesh, PartitionSpec(rows, *[PartitionSpec.UNCONSTRAINED] * (x.ndim - 1)))
    return jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, placed(x) if x.ndim else self._replicated),
                        tree)


def _bucket(size: int, buckets: tuple[int, ...]) -> int:
  """The smallest bucket >= size; sizes past the largest round up to a multiple of it."""
  for b in buckets:
    if b >= size:
      return b
  return -(-size // buckets[-1]) * buckets[-1]
