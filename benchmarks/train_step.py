"""Throughput of rr's jitted SFT train step: forward + backward + AdamW on one batch.

Workload of the peer `train` (see ../shared/bench/README.md): a Qwen2-shaped model (preset
qwen2-<size>), `--batch` x `--seq` random token ids, next-token loss on every position that has a
target (as HF's `labels=input_ids`), rr's optimizer from `base_config().optim` (AdamW, global-norm
clipping). Params are kept in `--dtype`, as the peer's `model.to(dtype)`. Reports the median seconds
of `--reps` steps after two warm-up steps (the first compiles) and tokens per second.

Peer, same machine state:
  python ../shared/bench/hf_peer.py --size tiny --what train && python benchmarks/train_step.py --size tiny
On a GPU: add --dtype bfloat16 to both, with --seq 2048 (peer: --seq 2048).
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
from rr.config import base_config
from rr.models import Decoder, model_config
from rr.sharding import make_mesh
from rr.train.optimizer import make_optimizer
from rr.train.batch import put_batch, sft_batch
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
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--param-dtype", default=None, choices=["float32", "bfloat16"],
                    help="params' dtype (default: --dtype, as the peer's model.to(dtype)); float32 with "
                         "--dtype bfloat16 is mixed precision, bfloat16 keeps a float32 master copy")
    ap.add_argument("--remat", default="none", choices=["none", "full", "dots"])
    ap.add_argument("--embed-one-hot", type=int, default=None, choices=[0, 1],
                    help="one-hot matmul embedding (1) or a gather (0); default: 1 on CPU (rr's config "
                         "default; on par with the gather here), 0 elsewhere (a V-wide one-hot is waste on GPU)")
    a = ap.parse_args()
    one_hot = jax.default_backend() == "cpu" if a.embed_one_hot is None else bool(a.embed_one_hot)

    cfg = model_config(*SIZES[a.size], dtype=a.dtype, param_dtype=a.param_dtype or a.dtype, embed_one_hot=one_hot,
                       remat=a.remat)
    mesh = make_mesh()
    optimizer = make_optimizer(base_config().optim, total_steps=1000, param_dtype=cfg.param_dtype)
    state, shardings = init_train_state(cfg, optimizer, mesh, seed=0)
    step = make_sft_step(Decoder(cfg), optimizer, shardings, mesh)

    tokens = np.random.default_rng(0).integers(3, cfg.vocab_size, (a.batch, a.seq)).astype(np.int32)
    loss_mask = np.ones((a.batch, a.seq), np.float32)
    loss_mask[:, -1] = 0  # the last position has no next token
    positions = np.broadcast_to(np.arange(a.seq, dtype=np.int32), tokens.shape)
    batch = put_batch(sft_batch({"tokens": tokens, "positions": positions, "loss_mask": loss_mask}), mesh)

    times = []
    for r in range(a.reps + 2):  # steps 0-1 warm up (step 0 compiles)
        t = time.perf_counter()
        state, metrics = step(state, batch, {})
        jax.block_until_ready((state, metrics))
        dt = time.perf_counter() - t
        if r >= 2:
            times.append(dt)
    assert np.isfinite(float(metrics["loss"])) and int(metrics["tokens"]) == a.batch * (a.seq - 1)
    n_params = sum(x.size for x in jax.tree.leaves(state["params"]))
    med = statistics.median(times)
    print(json.dumps({
        "what": "train", "impl": "rr", "size": a.size, "device": jax.devices()[0].platform,
        "jax": jax.__version__, "dtype": a.dtype, "param_dtype": cfg.param_dtype, "remat": a.remat,
        "embed_one_hot": cfg.embed_one_hot,
        "batch": a.batch, "seq": a.seq, "params": n_params, "median_s": med,
        "tokens_per_s": a.batch * a.seq / med}), flush=True)


if __name__ == "__main__":
    main()
