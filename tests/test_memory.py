"""rr.train.memory against what XLA allocates for the compiled SFT step, the real KV cache, and its CLI."""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rr import models, sharding
from rr.config import base_config
from rr.losses import completion_nll
from rr.train import memory
from rr.train.batch import sft_batch
from rr.train.optimizer import make_optimizer
from rr.train.setup import count_params
from rr.train.sft import make_sft_step
from rr.train.state import state_shardings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def nbytes(tree) -> int:
  return sum(int(np.prod(x.shape)) * jnp.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))


def compiled_step(cfg, batch, seq, config=None):
  """(XLA memory analysis of the jitted SFT step, state bytes, batch bytes, bytes autodiff saves); `config`
  sets the step's train.micro_batches and train.loss_chunk_tokens."""
  mesh = sharding.make_mesh()
  optimizer = make_optimizer(base_config().optim, 100, cfg.param_dtype)
  shardings = state_shardings(cfg, optimizer, mesh)
  params = jax.eval_shape(lambda: models.init_params(cfg, jax.random.key(0)))
  state = {"step": jax.ShapeDtypeStruct((), jnp.int32), "params": params,
           "opt_state": jax.eval_shape(optimizer.init, params)}
  rows = {"tokens": jnp.int32, "positions": jnp.int32, "loss_mask": jnp.float32}
  host = {k: jax.ShapeDtypeStruct((batch, seq), d) for k, d in rows.items()}
  step = make_sft_step(models.Decoder(cfg), optimizer, shardings, mesh, config)
  analysis = step.lower(state, sft_batch(host), {}).compile()
  return analysis.memory_analysis(), nbytes(state), nbytes(host), _saved_residual_bytes(cfg, params, batch, seq)


def _saved_residual_bytes(cfg, params, batch, seq):
  try:
    from jax._src.ad_checkpoint import saved_residuals  # what print_saved_residuals prints
  except ImportError:
    return None
  model = models.Decoder(cfg)
  tokens = jnp.zeros((batch, seq), jnp.int32)
  positions = jnp.broadcast_to(jnp.arange(seq, dtype=jnp.int32), (batch, seq))

  def loss(params):
    return completion_nll(model.apply({"params": params}, tokens, positions)[0], tokens, jnp.ones((batch, seq)))[0]

  zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), params)
  return sum(int(np.prod(a.shape)) * a.dtype.itemsize for a, why in saved_residuals(loss, zeros)
             if "argument" not in why)


@pytest.mark.parametrize("preset, seq, dtype", [("nano", 128, "float32"), ("tiny", 256, "float32"),
                                                ("nano", 256, "bfloat16")])
def test_estimate_matches_the_compiled_sft_step(preset, seq, dtype):
  cfg = models.model_config(preset, vocab_size=48, dtype=dtype, param_dtype=dtype)
  analysis, state_bytes, batch_bytes, saved = compiled_step(cfg, 8, seq)
  est = memory.estimate_memory(cfg, batch_size=8, seq_len=seq)
  kept = est["activations"] + est["logits"]
  print(f"\n{preset} {dtype} 8x{seq}: XLA arguments {analysis.argument_size_in_bytes} (state {state_bytes}), "
        f"estimate params+master+optimizer {est['params'] + est['master'] + est['optimizer']}; XLA temp "
        f"{analysis.temp_size_in_bytes / 2**20:.2f} MiB, autodiff residuals {(saved or 0) / 2**20:.2f} MiB, "
        f"estimate activations+logits {kept / 2**20:.2f} MiB (x{kept / analysis.temp_size_in_bytes:.2f} of temp)")
  # The state argument is params, master and moments, exactly, up to three int32 counters.
  assert analysis.argument_size_in_bytes == state_bytes + batch_bytes
  assert 0 <= state_bytes - (est["params"] + est["master"] + est["optimizer"]) <= 12
  # Activations dominate these shapes; XLA:CPU keeps what autodiff saves (measured 0.87x-1.09x of temp).
  assert 0.5 < kept / analysis.temp_size_in_bytes < 2.0
  if saved is not None:
    assert abs(kept / saved - 1) < 0.05


def test_param_and_kv_cache_counts_are_exact():
  cfg = models.model_config("nano", vocab_size=48, dtype="bfloat16")
  params = jax.eval_shape(lambda: models.init_params(cfg, jax.random.key(0)))
  assert memory.param_elements(cfg) == count_params(params) == 80512 / 4
  # nano: D 32, F 64, 4 heads / 2 kv heads of 8. The tensor axis splits vocab, heads, kv heads and MLP, not
  # the norms (3 per 2 layers = 5 x 32) or anything of width D alone; fsdp splits D (the embedding width) too.
  D, F, V, L = 32, 64, 48, 2
  attention, mlp = D * 4 * 8 + 2 * D * 2 * 8 + 4 * 8 * D, 3 * D * F
  assert memory.param_elements(cfg, mesh={"tensor": 2}) == V * D / 2 + L * (attention / 2 + mlp / 2 + 2 * D) + D
  assert memory.param_elements(cfg, mesh={"data": 4, "fsdp": 2, "tensor": 2}) == (
      V * D / 4 + L * (attention / 4 + mlp / 4 + 2 * D) + D)
  cache = models.init_cache(cfg, 6, 40)
  assert memory.estimate_kv_cache(cfg, rows=6, cache_len=40) == nbytes(cache) - 4  # less the int32 `end`
  kv, pos = nbytes([cache["k"], cache["v"]]), nbytes(cache["pos"])
  # k and v split over rows (data and fsdp) and kv heads (tensor), the slot positions over rows only.
  assert memory.estimate_kv_cache(cfg, rows=6, cache_len=40, mesh={"data": 2, "tensor": 2}) == kv / 4 + pos / 2
  cache = models.init_cache(cfg, 8, 40)
  kv, pos = nbytes([cache["k"], cache["v"]]), nbytes(cache["pos"])
  assert memory.estimate_kv_cache(cfg, rows=8, cache_len=40, mesh={"data": 2, "fsdp": 2, "tensor": 2}) == (
      kv / 8 + pos / 4)  # the sampler's rules: fsdp splits rows, not params


@functools.lru_cache(maxsize=1)
def _whole_step_temp_bytes(cfg) -> int:
  return compiled_step(cfg, 8, 128)[0].temp_size_in_bytes


@pytest.mark.parametrize("micro_batches, chunk", [(4, 0), (1, 64)])
def test_micro_batches_and_loss_chunks_shrink_the_compiled_step_as_estimated(micro_batches, chunk):
  cfg = models.model_config("nano", vocab_size=2048)  # a vocabulary-heavy shape: the logits matter
  config = base_config()
  config.train.micro_batches, config.train.loss_chunk_tokens = micro_batches, chunk
  whole = _whole_step_temp_bytes(cfg)
  split = compiled_step(cfg, 8, 128, config)[0].temp_size_in_bytes
  est_whole = memory.estimate_memory(cfg, batch_size=8, seq_len=128)
  est = memory.estimate_memory(cfg, batch_size=8, seq_len=128, micro_batches=micro_batches, loss_chunk_tokens=chunk)
  kept = lambda e: e["activations"] + e["logits"] + e.get("accumulator", 0)
  print(f"\nmicro {micro_batches} chunk {chunk}: XLA temp {whole / 2**20:.2f} -> {split / 2**20:.2f} MiB, "
        f"estimate {kept(est_whole) / 2**20:.2f} -> {kept(est) / 2**20:.2f} MiB")
  assert split < 0.6 * whole and kept(est) < 0.6 * kept(est_whole)
  assert 0.5 < kept(est) / split < 2.0


def test_remat_and_bf16_shrink_the_estimate_where_they_should():
  shape = dict(vocab_size=151936, num_layers=2)  # qwen3-0.6b's layers, two of them
  est = {remat: memory.estimate_memory(models.model_config("qwen3-0.6b", remat=remat, **shape), batch_size=8,
                                       seq_len=1024) for remat in ("none", "dots", "full")}
  assert est["full"]["activations"] < est["dots"]["activations"] < est["none"]["activations"]
  assert len({e["params"] for e in est.values()}) == 1
  bf16 = memory.estimate_memory(models.model_config("qwen3-0.6b", dtype="bfloat16", param_dtype="bfloat16", **shape),
                                batch_size=8, seq_len=1024)
  n = memory.param_elements(models.model_config("qwen3-0.6b", **shape))
  assert (bf16["params"], bf16["master"], bf16["grads"], bf16["update"]) == (2 * n, 4 * n, 2 * n, 4 * n)
  assert est["none"]["master"] == 0 and est["none"]["optimizer"] == bf16["optimizer"] == 8 * n
  # T x T scores dominate at 1024 tokens: float32 masked scores and exp, the softmax, the bool mask per layer.
  assert bf16["activations"] < est["none"]["activations"]
  for mesh in ({"data": 2, "tensor": 2}, {"fsdp": 2, "tensor": 2}):
    split = memory.estimate_memory(models.model_config("qwen3-0.6b", **shape), batch_size=8, seq_len=1024, mesh=mesh)
    assert split["logits"] * 4 == est["none"]["logits"]  # rows over data (or fsdp), vocab over tensor
    assert split["optimizer"] == 8 * memory.param_elements(models.model_config("qwen3-0.6b", **shape), mesh)
  # ZeRO-3: fsdp splits the params and moments that data alone replicates, and the rows as data does.
  data, fsdp = (memory.estimate_memory(models.model_config("qwen3-0.6b", **shape), batch_size=8, seq_len=1024,
                                       mesh={axis: 4}) for axis in ("data", "fsdp"))
  assert data["activations"] == fsdp["activations"] and data["optimizer"] == est["none"]["optimizer"]
  assert fsdp["optimizer"] < data["optimizer"] / 3


def test_cli_prints_the_sft_and_rl_steps_and_the_rollout_cache(capsys):
  grpo = os.path.join(ROOT, "configs", "grpo.py")
  assert memory.main(["--config", grpo + ":runlocal", "--config.model.param_dtype=bfloat16"]) == 0
  out = capsys.readouterr().out
  for line in ("SFT step: batch 8 x 64 tokens", "RL step: batch 2 x 4 = 8 x 80 tokens",
               "rollout KV cache: 8 rows x 80 slots", "master", "kv_cache"):
    assert line in out, out
  assert memory.main(["--config", grpo, "--config.model.remat=sometimes"]) == 2
  assert "model.remat" in capsys.readouterr().err
