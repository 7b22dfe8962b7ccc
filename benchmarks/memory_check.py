"""rr.train.memory's estimate against what one SFT step really takes on this device (a GPU check).

One process per setting, since the device's peak counter only grows:
  python benchmarks/memory_check.py --preset qwen2-0.5b --vocab 151936 --batch 8 --seq 1024 --param-dtype bfloat16 \
      --dtype bfloat16 --remat full
Prints one JSON line: the estimate by component, XLA's compiled plan (arguments, outputs, temporaries) and the
device's measured peak (`memory_stats()["peak_bytes_in_use"]`, where the backend reports it) after two steps.
"""
import argparse
import json
import pathlib
import sys

import jax
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # rr without installing it
from rr.config import base_config
from rr.models import Decoder, model_config
from rr.sharding import make_mesh
from rr.train.memory import GIB, estimate_memory
from rr.train.optimizer import make_optimizer
from rr.train.batch import put_batch, sft_batch
from rr.train.sft import make_sft_step
from rr.train.state import init_train_state


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--preset", default="qwen2-0.5b")
  ap.add_argument("--vocab", type=int, default=151936)
  ap.add_argument("--batch", type=int, default=8)
  ap.add_argument("--seq", type=int, default=1024)
  ap.add_argument("--dtype", default="bfloat16")
  ap.add_argument("--param-dtype", default="float32")
  ap.add_argument("--remat", default="none")
  a = ap.parse_args()
  cfg = model_config(a.preset, a.vocab, dtype=a.dtype, param_dtype=a.param_dtype, remat=a.remat,
                     embed_one_hot=False)
  mesh = make_mesh()
  optimizer = make_optimizer(base_config().optim, 1000, cfg.param_dtype)
  state, shardings = init_train_state(cfg, optimizer, mesh, seed=0)
  step = make_sft_step(Decoder(cfg), optimizer, shardings, mesh)
  tokens = np.random.default_rng(0).integers(3, a.vocab, (a.batch, a.seq)).astype(np.int32)
  mask = np.ones((a.batch, a.seq), np.float32)
  mask[:, -1] = 0
  positions = np.broadcast_to(np.arange(a.seq, dtype=np.int32), tokens.shape)
  batch = put_batch(sft_batch({"tokens": tokens, "positions": positions, "loss_mask": mask}), mesh)
  plan = step.lower(state, batch, {}).compile().memory_analysis()
  for _ in range(2):
    state, metrics = step(state, batch, {})
  jax.block_until_ready(state)
  stats = jax.devices()[0].memory_stats() or {}
  estimate = estimate_memory(cfg, batch_size=a.batch, seq_len=a.seq)
  gib = lambda b: round(b / GIB, 3)  # noqa: E731
  print(json.dumps({
      "what": "memory", "device": jax.devices()[0].device_kind, "preset": a.preset, "batch": a.batch,
      "seq": a.seq, "dtype": a.dtype, "param_dtype": a.param_dtype, "remat": a.remat,
      "loss": float(metrics["loss"]),
      "estimate_gib": {k: gib(v) for k, v in estimate.items()},
      "xla_plan_gib": {"arguments": gib(plan.argument_size_in_bytes), "outputs": gib(plan.output_size_in_bytes),
                       "temp": gib(plan.temp_size_in_bytes), "aliased": gib(plan.alias_size_in_bytes)},
      "measured_peak_gib": gib(stats["peak_bytes_in_use"]) if "peak_bytes_in_use" in stats else None}),
      flush=True)


if __name__ == "__main__":
  main()
