"""Throughput and MFU of rr's jitted SFT train step: forward + backward + AdamW on one batch.

Workload of the peer `train` (see ../shared/bench/README.md): a Qwen2-shaped model (preset qwen2-<size>),
`--batch` x `--seq` random token ids, next-token loss on every position that has a target (as HF's
`labels=input_ids`), rr's optimizer from `base_config().optim` (AdamW, global-norm clipping) and its objective
(`rr.train.sft.make_sft_step` with the config's train.loss_chunk_tokens). Params are kept in `--param-dtype`
(default `--dtype`, as the peer's `model.to(dtype)`). The step is compiled once ahead of time (its compiled
temporaries are reported), two steps warm up, then each of `--reps` reps runs `--steps` steps back to back with
the state donated and blocks once at its end; the median rep gives seconds per step, tokens/s and MFU
(benchmarks/flops.py has the formula). `--profile-dir` then traces `--profile-steps` more steps with jax.profiler.

Peer, same machine state:
  python ../shared/bench/hf_peer.py --size tiny --what train && python benchmarks/train_step.py --size tiny
On a GPU: --dtype bfloat16 --seq 2048 (peer: --dtype bfloat16 --seq 2048); benchmarks/gpu_all.sh runs both.
"""

import argparse
import json
import pathlib
import statistics
import sys
import time

import jax
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # rr without installing it
from benchmarks import flops
from rr.config import base_config
from rr.models import Decoder, model_config
from rr.sharding import make_mesh
from rr.train.batch import put_batch, sft_batch
from rr.train.optimizer import make_optimizer
from rr.train.sft import make_sft_step
from rr.train.state import init_train_state

# --size as in hf_peer.py: (rr preset, vocab)
SIZES = {"tiny": ("qwen2-tiny", 512), "small": ("qwen2-small", 4096), "qwen0.5b": ("qwen2-0.5b", 151936)}


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--size", default="tiny", choices=list(SIZES))
  ap.add_argument("--batch", type=int, default=8)
  ap.add_argument("--seq", type=int, default=256)
  ap.add_argument("--reps", type=int, default=3)
  ap.add_argument("--steps", type=int, default=2, help="steps per timed rep, dispatched back to back")
  ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
  ap.add_argument("--param-dtype", default=None, choices=["float32", "bfloat16"],
                  help="params' dtype (default: --dtype, as the peer's model.to(dtype)); float32 with "
                       "--dtype bfloat16 is mixed precision, bfloat16 keeps a float32 master copy")
  ap.add_argument("--remat", default="none", choices=["none", "full", "dots"])
  ap.add_argument("--attention", default="auto", choices=["auto", "xla", "cudnn"], help="model.attention")
  ap.add_argument("--loss-chunk-tokens", type=int, default=0,
                  help="train.loss_chunk_tokens: the NLL over chunks of this many tokens (0: full logits)")
  ap.add_argument("--embed-one-hot", type=int, default=None, choices=[0, 1],
                  help="one-hot matmul embedding (1) or a gather (0); default: 1 on CPU (rr's config "
                       "default; on par with the gather here), 0 elsewhere (a V-wide one-hot is waste on GPU)")
  ap.add_argument("--profile-dir", default="", help="write a jax.profiler trace of --profile-steps steps here")
  ap.add_argument("--profile-steps", type=int, default=3)
  flops.add_peak_args(ap)
  a = ap.parse_args()
  one_hot = jax.default_backend() == "cpu" if a.embed_one_hot is None else bool(a.embed_one_hot)

  cfg = model_config(*SIZES[a.size], dtype=a.dtype, param_dtype=a.param_dtype or a.dtype, embed_one_hot=one_hot,
                     remat=a.remat, attention=a.attention)
  config = base_config()
  config.train.loss_chunk_tokens = a.loss_chunk_tokens
  mesh = make_mesh()
  optimizer = make_optimizer(config.optim, total_steps=1000, param_dtype=cfg.param_dtype)
  state, shardings = init_train_state(cfg, optimizer, mesh, seed=0)
  step = make_sft_step(Decoder(cfg), optimizer, shardings, mesh, config=config)

  tokens = np.random.default_rng(0).integers(3, cfg.vocab_size, (a.batch, a.seq)).astype(np.int32)
  loss_mask = np.ones((a.batch, a.seq), np.float32)
  loss_mask[:, -1] = 0  # the last position has no next token
  positions = np.broadcast_to(np.arange(a.seq, dtype=np.int32), tokens.shape)
  batch = put_batch(sft_batch({"tokens": tokens, "positions": positions, "loss_mask": loss_mask}), mesh)

  t = time.perf_counter()
  compiled = step.lower(state, batch, {}).compile()
  compile_s = time.perf_counter() - t
  n_params = sum(x.size for x in jax.tree.leaves(state["params"]))
  n_matmul = flops.matmul_params(state["params"])
  for _ in range(2):  # warm-up
    state, metrics = compiled(state, batch, {})
  jax.block_until_ready((state, metrics))
  times = []
  for _ in range(a.reps):
    t = time.perf_counter()
    for _ in range(a.steps):
      state, metrics = compiled(state, batch, {})
    jax.block_until_ready((state, metrics))
    times.append((time.perf_counter() - t) / a.steps)
  assert np.isfinite(float(metrics["loss"])) and int(metrics["target_tokens"]) == a.batch * (a.seq - 1)
  if a.profile_dir:
    with jax.profiler.trace(a.profile_dir):
      for _ in range(a.profile_steps):
        state, metrics = compiled(state, batch, {})
      jax.block_until_ready((state, metrics))

  med = statistics.median(times)
  tokens_per_s = a.batch * a.seq / med
  flops_per_token = flops.train_flops_per_token(cfg, n_matmul, a.seq)
  peaks = flops.device_peaks(a)
  memory = jax.devices()[0].memory_stats() or {}
  print(json.dumps({
      "what": "train", "impl": "rr", "size": a.size, "device": jax.devices()[0].platform, "jax": jax.__version__,
      "dtype": a.dtype, "param_dtype": cfg.param_dtype, "remat": a.remat, "attention": a.attention,
      "loss_chunk_tokens": a.loss_chunk_tokens, "embed_one_hot": cfg.embed_one_hot, "batch": a.batch, "seq": a.seq,
      "params": n_params, "matmul_params": n_matmul, "compile_s": compile_s, "step_s": times, "median_s": med,
      "tokens_per_s": tokens_per_s, "flops_per_token": flops_per_token, "flops_formula": flops.TRAIN_FLOPS_FORMULA,
      **peaks, "mfu": flops.mfu(tokens_per_s * flops_per_token, peaks),
      "temp_bytes": compiled.memory_analysis().temp_size_in_bytes,
      "peak_bytes_in_use": memory.get("peak_bytes_in_use")}), flush=True)


if __name__ == "__main__":
  main()
