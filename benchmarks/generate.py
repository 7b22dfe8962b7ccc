"""Sampling throughput of rr's Sampler (jitted prefill + while_loop decode with a KV cache), and how close its
decode steps come to the memory-bandwidth bound.

Workload of the peer `gen` (see ../shared/bench/README.md): a Qwen2-shaped model (preset qwen2-<size>),
`--batch` random prompts of `--prompt-len` ids, `--new-tokens` sampled at temperature 1 with no early stop
(eos_id=-1, which no sampled id can equal). Reports the median seconds of `--reps` calls after one warm-up call
(which compiles) and new tokens per second; each call returns numpy, so it ends synchronised. The prefill alone
(rr.sampler.decode.prefill, jitted on the same padded shapes) is timed too, so that a decode step's time is
(call - prefill) / new tokens; with the bytes a step reads (benchmarks/flops.py) that gives the fraction of the
device's bandwidth bound.

Peer, same machine state:
  python ../shared/bench/hf_peer.py --size tiny --what gen && python benchmarks/generate.py --size tiny
On a GPU: --dtype bfloat16 --batch 64|256 --prompt-len 128 --new-tokens 256 for both; benchmarks/gpu_all.sh.
"""

import argparse
import functools
import json
import pathlib
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # rr without installing it
from benchmarks import flops
from rr.models import init_params, model_config
from rr.sampler import Sampler, Sampling
from rr.sampler.decode import prefill
from rr.sampler.sampler import DEFAULT_PROMPT_BUCKETS

# --size as in hf_peer.py: (rr preset, vocab)
SIZES = {"tiny": ("qwen2-tiny", 512), "small": ("qwen2-small", 4096), "qwen0.5b": ("qwen2-0.5b", 151936)}


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--size", default="tiny", choices=list(SIZES))
  ap.add_argument("--batch", type=int, default=16)
  ap.add_argument("--prompt-len", type=int, default=32)
  ap.add_argument("--new-tokens", type=int, default=64)
  ap.add_argument("--reps", type=int, default=3)
  ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
  ap.add_argument("--attention", default="auto", choices=["auto", "xla", "cudnn"], help="model.attention")
  ap.add_argument("--embed-one-hot", type=int, default=0, choices=[0, 1],
                  help="one-hot matmul embedding (1) or a gather (0, default: as fast or faster on CPU)")
  flops.add_peak_args(ap)
  a = ap.parse_args()

  cfg = model_config(*SIZES[a.size], dtype=a.dtype, param_dtype=a.dtype, embed_one_hot=bool(a.embed_one_hot),
                     attention=a.attention)
  params = init_params(cfg, jax.random.key(0))
  sampler = Sampler(cfg, eos_id=-1, pad_id=1)  # eos -1: never sampled, so every row runs to the end
  prompts = np.random.default_rng(0).integers(3, cfg.vocab_size, (a.batch, a.prompt_len)).tolist()

  times = []
  for r in range(a.reps + 1):  # call 0 compiles
    t = time.perf_counter()
    out = sampler(params, prompts, max_new_tokens=a.new_tokens, strategy=Sampling(temperature=1.0),
                  rng=jax.random.key(r))  # returns numpy, so the work is done
    dt = time.perf_counter() - t
    assert int(out.lengths.sum()) == a.batch * a.new_tokens, out.lengths
    if r:
      times.append(dt)

  # The prefill on the shapes the sampler ran: prompts left-padded to their bucket P, a cache of P + new slots.
  bucket = next(b for b in DEFAULT_PROMPT_BUCKETS if b >= a.prompt_len)
  tokens = jnp.pad(jnp.asarray(prompts, jnp.int32), ((0, 0), (bucket - a.prompt_len, 0)), constant_values=1)
  positions = jnp.broadcast_to(jnp.arange(bucket, dtype=jnp.int32) - (bucket - a.prompt_len), tokens.shape)
  positions = jnp.where(positions < 0, -1, positions)
  run_prefill = jax.jit(functools.partial(prefill, sampler.model_cfg, cache_len=bucket + a.new_tokens))
  jax.block_until_ready(run_prefill(params, tokens, positions))
  prefill_times = []
  for _ in range(a.reps):
    t = time.perf_counter()
    jax.block_until_ready(run_prefill(params, tokens, positions))
    prefill_times.append(time.perf_counter() - t)

  med, prefill_s = statistics.median(times), statistics.median(prefill_times)
  decode_step_s = max(med - prefill_s, 0.0) / a.new_tokens
  n_matmul = flops.matmul_params(params)
  step_bytes = flops.decode_bytes_per_step(cfg, n_matmul, a.batch, bucket + a.new_tokens)
  peaks = flops.device_peaks(a)
  print(json.dumps({
      "what": "gen", "impl": "rr", "size": a.size, "device": jax.devices()[0].platform, "jax": jax.__version__,
      "dtype": a.dtype, "attention": a.attention, "embed_one_hot": cfg.embed_one_hot, "batch": a.batch,
      "prompt_len": a.prompt_len, "prompt_bucket": bucket, "new_tokens": a.new_tokens,
      "compilations": sampler.num_compilations,
      "call_s": times, "median_s": med, "new_tokens_per_s": a.batch * a.new_tokens / med, "prefill_s": prefill_s,
      "decode_step_s": decode_step_s, "decode_bytes_per_step": step_bytes,
      "decode_bytes_formula": flops.DECODE_BYTES_FORMULA, **peaks,
      "decode_bandwidth_fraction": flops.bandwidth_fraction(step_bytes / decode_step_s, peaks)
      if decode_step_s else None}), flush=True)


if __name__ == "__main__":
  main()
