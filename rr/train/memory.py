"""How many bytes one device holds for a train step, by component, before anything is compiled.

    python -m rr.train.memory --config configs/<x>.py[:arg] [--config.KEY=VALUE ...]

`estimate_memory` counts, per device, for one SFT step (`rr.train.step`):
  params       stored in param_dtype, each split as the rr.sharding rules say (by default fsdp splits the
               embedding width, tensor heads, kv heads, MLP and vocab; so do master, grads and optimizer)
  master       the float32 copy the optimiser updates when params are below float32 (rr.train.precision)
  grads        one per param, in param_dtype
  update       the optimiser's float32 copy of the gradients (clipped, or cast up from bf16)
  optimizer    AdamW's two moments, float32
  activations  what the backward keeps of the forward, by `remat` (below), plus the one-hot embedding input;
               rows split over the batch axes (data x fsdp), heads, MLP and vocab over tensor
  logits       float32 logits (or their gradient) and the log-softmax's exp, B x T x V each (one more, the
               entropy's softmax, in an RL step)
and `estimate_kv_cache` the sampler's cache for a rollout. A mesh is {axis: size} over rr.sharding's axes
(missing ones: 1) under the active rules (rr.sharding.rules_from_config). The activation terms are what JAX's
autodiff saves for each DecoderLayer (`jax.ad_checkpoint.print_saved_residuals` lists them). Measured against
the compiled step's `memory_analysis()`: state bytes equal its arguments; with remat none, XLA:CPU's temp is
0.87x-1.09x of activations + logits (tests/test_memory.py), an H100's 0.8x. XLA:CPU does not realise remat's
savings (it keeps the recomputed activations alive), GPU does. Not counted: the batch, XLA's workspace, one
layer's backward transients. The total adds the parts up, while XLA's peak is a maximum over the program
(grads are mostly made after the activations they replace are freed): read it as an upper bound.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec

from rr import models, sharding
from rr.config import MESH_AXES

USAGE = ("usage: python -m rr.train.memory --config configs/<name>.py[:arg] [--config.KEY=VALUE ...]\n"
         "  e.g. python -m rr.train.memory --config configs/hf_sft.py:model=DIR")

GIB = 1024 ** 3
F32 = 4


def _devices(axes, mesh: dict[str, int]) -> int:
  """Devices a PartitionSpec entry (None, a mesh axis or a tuple of them) splits a dimension over."""
  axes = () if axes is None else (axes,) if isinstance(axes, str) else axes
  return math.prod(mesh.get(axis, 1) for axis in axes)


def _per_device(shape: tuple[int, ...], spec, mesh: dict[str, int], rules) -> int:
  """Elements of one device's shard of an array of `shape` laid out by the logical `spec`."""
  mesh_spec = sharding.mesh_spec(spec, rules)
  count = 1
  for i, size in enumerate(shape):
    count *= math.ceil(size / _devices(mesh_spec[i] if i < len(mesh_spec) else None, mesh))
  return count


def _rows(batch: int, mesh: dict[str, int], rules) -> int:
  """One device's rows of a batch: split over the batch rule's axes (data and fsdp by default)."""
  return math.ceil(batch / _devices(sharding.mesh_spec(PartitionSpec("batch"), rules)[0], mesh))


def _split(size: int, logical: str, mesh: dict[str, int], rules) -> int:
  """One device's part of an activation dimension of axis `logical` (heads over tensor, by default) beside the
  batch rows, whose mesh axes it cannot reuse."""
  return math.ceil(size / _devices(sharding.mesh_spec(PartitionSpec("batch", logical), rules)[1], mesh))


def param_elements(model_cfg: models.ModelConfig, mesh: dict[str, int] | None = None) -> int:
  """Params one device holds (exact: the model's own param tree and logical axes, traced without FLOPs)."""
  shape_only = {name: getattr(models.ModelConfig, name) for name in models.ModelConfig.RUNTIME_FIELDS}
  return _param_elements(dataclasses.replace(model_cfg, **shape_only), tuple(sorted((mesh or {}).items())),
                         sharding.active_rules())


@functools.lru_cache(maxsize=32)
def _param_elements(model_cfg: models.ModelConfig, mesh: tuple[tuple[str, int], ...], rules) -> int:
  shapes = jax.eval_shape(lambda: models.init_params(model_cfg, jax.random.key(0)))
  specs = models.param_logical_axes(model_cfg)
  leaves = jax.tree.leaves(jax.tree.map(lambda s, p: _per_device(s.shape, p, dict(mesh), rules), shapes, specs,
                                        is_leaf=lambda x: isinstance(x, jax.ShapeDtypeStruct)))
  return int(sum(leaves))


def layer_activation_bytes(model_cfg: models.ModelConfig, batch: int, seq_len: int,
                           mesh: dict[str, int] | None = None, policy: str = "none") -> int:
  """Bytes one DecoderLayer keeps for the backward under remat `policy` (batch = rows on this device).

  none, what autodiff saves: per norm its input in float32, x / rms and the scaled output; q, k, v after rope;
  the B x N x T x S masked scores and their exp in float32, the softmax in the compute dtype and the bool
  mask; the attention output; the MLP's gate, up, three silu terms and silu * up.
  full: only the layer's input. dots: the input and the outputs of its weight matmuls (q, k, v, o, gate, up,
  down); the attention einsums have batch dims, so their T x T outputs are recomputed.
  """
  c = jnp.dtype(model_cfg.dtype).itemsize
  m = batch * seq_len
  d, h = model_cfg.hidden_size, model_cfg.resolved_head_dim
  mesh, rules = mesh or {}, sharding.active_rules()
  n, kv = _split(model_cfg.num_heads, "heads", mesh, rules), _split(model_cfg.num_kv_heads, "kv_heads", mesh, rules)
  f = _split(model_cfg.intermediate_size, "mlp", mesh, rules)
  if policy == "full":
    return m * d * c
  if policy == "dots":
    return m * d * c + m * (n + 2 * kv) * h * c + 2 * m * d * c + 2 * m * f * c
  if policy != "none":
    raise ValueError(f"remat policy {policy!r}; choose none, full or dots")
  stats = lambda rows: 2 * rows * F32  # 1 / rms and its derivative term, float32, one per row
  total = 2 * (m * d * (F32 + 2 * c) + stats(m))  # per norm: x in float32, x / rms, the scaled output
  if model_cfg.qk_norm:  # q and k norms: their float32 input and x / rms (rope, next, is linear)
    total += m * (n + kv) * h * (F32 + c) + stats(m * (n + kv))
  total += m * (n + 2 * kv) * h * c  # q, k, v after rope
  # Masked scores and their exp in float32, the softmax in the compute dtype, the bool mask; row statistics.
  total += batch * n * seq_len * seq_len * (2 * F32 + c + 1) + 2 * batch * n * seq_len * F32
  total += m * n * h * c  # attention output, the o projection's input
  total += 6 * m * f * c  # gate, up, silu (and its two derivative terms), silu * up
  return total


def estimate_memory(model_cfg: models.ModelConfig, *, batch_size: int, seq_len: int,
                    mesh: dict[str, int] | None = None, clipped: bool = True, rl: bool = False,
                    kl_reference: bool = False, micro_batches: int = 1, loss_chunk_tokens: int = 0) -> dict[str, int]:
  """Bytes per device of one train step on `batch_size` rows (global) of `seq_len` tokens, by component.

  `clipped`: gradients are clipped by global norm (config.optim.clip_norm > 0), which needs a float32 copy of
  them (`update`); bf16 params need it anyway (rr.train.precision casts the gradients). `rl`: the policy-
  gradient step, whose entropy keeps a softmax over the vocabulary too (its shared-prompt forward, which
  runs each group's prompt once, is not modelled: an upper bound). `kl_reference`: frozen reference params.
  `micro_batches` (train.micro_batches): activations and logits are one micro-batch's, plus the float32 sum of
  the gradients (`accumulator`). `loss_chunk_tokens` (train.loss_chunk_tokens, SFT): the logits terms are one
  chunk's (rr.losses.chunked_completion_nll: chunk_tokens // batch_size columns of every row).
  Keys: params, master, grads, update, optimizer, activations, logits, [accumulator], [reference], total.
  """
  p = jnp.dtype(model_cfg.param_dtype).itemsize
  c = jnp.dtype(model_cfg.dtype).itemsize
  count = param_elements(model_cfg, mesh)
  rows = math.ceil(_rows(batch_size, mesh or {}, sharding.active_rules()) / micro_batches)
  m = rows * seq_len
  logit_rows = m if rl or not loss_chunk_tokens else rows * min(seq_len, max(1, loss_chunk_tokens // batch_size))
  v = _split(model_cfg.vocab_size, "vocab", mesh or {}, sharding.active_rules())
  d = model_cfg.hidden_size
  kept = model_cfg.num_layers * layer_activation_bytes(model_cfg, rows, seq_len, mesh, model_cfg.remat)
  if model_cfg.remat != "none":  # the layer being recomputed holds its full activations for its backward
    kept += layer_activation_bytes(model_cfg, rows, seq_len, mesh, "none")
  # The final norm (its input is the last layer's output) and the rope tables, float32 sin and cos.
  outside = m * d * (F32 + 2 * c) + 2 * m * F32 + 2 * m * model_cfg.resolved_head_dim * F32
  if model_cfg.embed_one_hot:
    outside += m * v * c  # the one-hot input of the embedding matmul, kept for its weight gradient
  out = {"params": count * p, "master": count * F32 if p < F32 else 0, "grads": count * p,
         "update": count * F32 if clipped or p < F32 else 0, "optimizer": 2 * count * F32,
         "activations": kept + outside, "logits": (3 if rl else 2) * logit_rows * v * F32}
  if micro_batches > 1:
    out["accumulator"] = count * F32
  if kl_reference:
    out["reference"] = count * p
  out["total"] = sum(out.values())
  return out


def estimate_kv_cache(model_cfg: models.ModelConfig, *, rows: int, cache_len: int,
                      mesh: dict[str, int] | None = None) -> int:
  """Bytes per device of the sampler's KV cache (rr.models.cache): k and v for every layer in the compute
  dtype, plus the int32 slot positions; rows over the batch axes, kv heads as the decode rules say (tensor)."""
  c = jnp.dtype(model_cfg.dtype).itemsize
  mesh, rules = mesh or {}, sharding.decode_rules(sharding.active_rules())
  rows = _rows(rows, mesh, rules)
  kv = _split(model_cfg.num_kv_heads, "kv_heads", mesh, rules)
  return 2 * model_cfg.num_layers * rows * cache_len * kv * model_cfg.resolved_head_dim * c + rows * cache_len * 4


def mesh_sizes(config) -> dict[str, int]:
  """{axis: devices} of the config's mesh; data = -1 means every device fsdp and tensor leave."""
  sizes = {axis: max(int(config.mesh[axis]), 1) for axis in MESH_AXES}
  if config.mesh.data == -1:
    sizes["data"] = max(len(jax.devices()) // (sizes["fsdp"] * sizes["tensor"]), 1)
  return sizes


def config_report(config) -> list[tuple[str, dict[str, int]]]:
  """[(title, components)] for a run config: its SFT step and, for RL trainers, the RL step and the rollout's
  KV cache, under the config's mesh and rules. Lengths are bounds read from the config, no data is loaded: an
  SFT row is data.max_len tokens, an RL row a prompt of at most data.max_len (rounded up to 8) plus
  rl.max_new_tokens."""
  from rr.config import stage_config, stage_names
  from rr.data.tokenizers import tokenizer_from_config
  from rr.sampler.sampler import DEFAULT_PROMPT_BUCKETS, _bucket
  from rr.train.setup import build_model_config

  if config.trainer == "stages":  # each stage's rows, under its name
    return [(f"stage {name}: {title}", parts) for name in stage_names(config)
            for title, parts in config_report(stage_config(config, name))]
  model_cfg = build_model_config(config, tokenizer_from_config(config).vocab_size)
  sizes = mesh_sizes(config)
  mesh = dict(mesh=sizes, clipped=config.optim.clip_norm > 0, micro_batches=config.train.micro_batches)
  with sharding.rules_from_config(config):
    report = [(f"SFT step: batch {config.train.batch_size} x {config.data.max_len} tokens",
               estimate_memory(model_cfg, batch_size=config.train.batch_size, seq_len=config.data.max_len,
                               loss_chunk_tokens=config.train.loss_chunk_tokens, **mesh))]
    if config.trainer == "grpo":
      rl = config.rl
      rows = rl.prompts_per_step * rl.group_size
      width = -(-config.data.max_len // 8) * 8 + rl.max_new_tokens
      report.append((f"RL step: batch {rl.prompts_per_step} x {rl.group_size} = {rows} x {width} tokens",
                     estimate_memory(model_cfg, batch_size=rows, seq_len=width, rl=True,
                                     kl_reference=rl.kl_beta > 0, **mesh)))
      cache_len = _bucket(config.data.max_len, DEFAULT_PROMPT_BUCKETS) + rl.max_new_tokens
      report.append((f"rollout KV cache: {rows} rows x {cache_len} slots",
                     {"kv_cache": estimate_kv_cache(model_cfg, rows=rows, cache_len=cache_len, mesh=sizes)}))
  return report


def format_report(report: list[tuple[str, dict[str, int]]]) -> str:
  lines = []
  for title, parts in report:
    lines += [title, f"  {'component':<12} {'GiB':>10} {'MiB':>12}"]
    lines += [f"  {name:<12} {value / GIB:>10.3f} {value / 2 ** 20:>12.2f}" for name, value in parts.items()]
  return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
  from rr import cli
  from rr.config import load_config

  argv = sys.argv[1:] if argv is None else argv

  def body():
    spec, overrides, _ = cli.parse_command_line(argv, USAGE)
    print(format_report(config_report(load_config(spec, overrides))))

  return cli.exit_status(body)


if __name__ == "__main__":
  sys.exit(main())
