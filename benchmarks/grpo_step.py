"""Seconds per GRPO step of rr's RL trainer: sample, score, advantages, one optimiser step.

Workload of the peer `grpo` (see ../shared/bench/README.md): a Qwen2-shaped model (preset
qwen2-<size>), 16 completions per step = 2 prompts x 8, 32 new tokens at temperature 1, prompts of
16 tokens, a host-side text reward (the completion contains a digit), beta 0, one optimiser step per batch,
learning rate 1e-5. It times `rr.train.grpo.GRPOStep`, the object the trainer's loop calls, so sampling,
decoding, scoring, batch layout, the jitted prepare (advantages) and update are all inside the timed step, which
ends when the update's metrics are back on the host (the update itself is dispatched asynchronously). Reports the
median of `--steps` steps after two warm-up steps (the first compiles), with the sampling / scoring / training
split (training: the rest of the step after sampling and scoring), and the training part's MFU: the model
FLOPs of a plain forward + backward over all B x width tokens (benchmarks/flops.py), so the shared-prompt forward's
saving shows as speed, not as fewer FLOPs.

Peers, same machine state (TRL in a venv with torch + trl + datasets; Tunix in its own venv):
  python ../shared/bench/hf_peer.py --size tiny --what grpo && python benchmarks/grpo_step.py --size tiny
  "$TUNIX_VENV/bin/python" ../shared/bench/tunix_peer.py --size tiny --what grpo
On a GPU: --size qwen0.5b --dtype bfloat16 (peer: --dtype bfloat16); benchmarks/gpu_all.sh runs both.
"""
import argparse
import json
import pathlib
import statistics
import string
import sys
import time

import jax
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # rr without installing it
from benchmarks import flops
from rr.config import base_config
from rr.models import Decoder, model_config
from rr.rewards import Combination, RowReward
from rr.sharding import make_mesh
from rr.tasks import Example
from rr.train.grpo import GRPOStep
from rr.train.optimizer import make_optimizer
from rr.train.state import init_train_state

# --size as in hf_peer.py: (rr preset, vocab)
SIZES = {"tiny": ("qwen2-tiny", 512), "small": ("qwen2-small", 4096), "qwen0.5b": ("qwen2-0.5b", 151936)}
PROMPT_LEN = 16


class IdTokenizer:
  """Ids to text without a vocabulary file: id 0 pads, 1 ends, others map onto letters and digits, so a
  random model's completions sometimes contain a digit (the reward has variance, as in the peers')."""
  pad_id, eos_id = 0, 1
  symbols = string.ascii_lowercase + string.digits

  def __init__(self, vocab_size: int):
    self.vocab_size = vocab_size

  def decode(self, ids) -> str:
    return "".join(self.symbols[i % len(self.symbols)] for i in ids if i > 1)


def has_digit():
  return RowReward("has_digit", lambda prompt, completion, example: float(any(c.isdigit() for c in completion)))


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--size", default="tiny", choices=list(SIZES))
  ap.add_argument("--steps", type=int, default=6, help="timed steps, after two warm-up steps")
  ap.add_argument("--embed-one-hot", type=int, default=None, choices=[0, 1],
                  help="one-hot matmul embedding (1) or a gather (0); default 1 on CPU, 0 elsewhere")
  ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                  help="compute dtype; params stay float32 (rr's mixed precision)")
  ap.add_argument("--remat", default="none", choices=["none", "full", "dots"])
  ap.add_argument("--attention", default="auto", choices=["auto", "xla", "cudnn"], help="model.attention")
  flops.add_peak_args(ap)
  a = ap.parse_args()
  one_hot = jax.default_backend() == "cpu" if a.embed_one_hot is None else bool(a.embed_one_hot)

  config = base_config()
  rl = config.rl
  rl.prompts_per_step, rl.group_size, rl.max_new_tokens = 2, 8, 32
  config.optim.lr, config.optim.warmup_steps = 1e-5, 0
  cfg = model_config(*SIZES[a.size], embed_one_hot=one_hot, dtype=a.dtype, remat=a.remat, attention=a.attention)
  mesh = make_mesh()
  optimizer = make_optimizer(config.optim, total_steps=1000, param_dtype=cfg.param_dtype)
  state, shardings = init_train_state(cfg, optimizer, mesh, seed=0)
  tokenizer = IdTokenizer(cfg.vocab_size)
  rng = np.random.default_rng(1)
  prompts = [list(rng.integers(2, cfg.vocab_size, PROMPT_LEN)) for _ in range(256)]
  examples = [Example(question="", rationale="", answer="") for _ in prompts]
  step_fn = GRPOStep(config, Decoder(cfg), optimizer, shardings, mesh, tokenizer, prompts, examples, [has_digit()],
                     Combination("weighted_sum", np.ones(1, np.float32)), width=PROMPT_LEN + rl.max_new_tokens)

  times, splits, rewards, lengths = [], [], [], []
  for step in range(a.steps + 2):  # steps 0-1 warm up (step 0 compiles)
    t = time.perf_counter()
    out = step_fn(state, step)
    metrics = jax.device_get(out.device)  # waits for the step's device work (prepare and update)
    jax.block_until_ready(out.state)
    dt = time.perf_counter() - t
    state = out.state
    assert metrics["finite"], [k for k, v in metrics["finite_terms"].items() if not v]
    if step >= 2:
      times.append(dt)
      m = out.host
      sampling, scoring = m["train/seconds_sampling"], m["train/seconds_scoring"]
      splits.append((sampling, scoring, dt - sampling - scoring))
      rewards.append(m["train/reward"])
      lengths.append(m["train/completions/mean_length"])
  med = statistics.median(times)
  sampling, scoring, training = (statistics.median(s) for s in zip(*splits))
  width = PROMPT_LEN + rl.max_new_tokens
  train_flops = (rl.prompts_per_step * rl.group_size * width
                 * flops.train_flops_per_token(cfg, flops.matmul_params(state["params"]), width))
  peaks = flops.device_peaks(a)
  print(json.dumps({
      "what": "grpo", "impl": "rr", "size": a.size, "device": jax.devices()[0].platform, "jax": jax.__version__,
      "dtype": a.dtype, "remat": a.remat, "attention": a.attention,
      "params": sum(x.size for x in jax.tree.leaves(state["params"])), "embed_one_hot": cfg.embed_one_hot,
      "completions_per_step": rl.prompts_per_step * rl.group_size, "prompt_len": PROMPT_LEN,
      "completion_len": rl.max_new_tokens, "mean_completion_tokens": float(np.mean(lengths)),
      "mean_reward": float(np.mean(rewards)), "steps": a.steps, "step_s": times, "median_s_per_step": med,
      "median_s_sampling": sampling, "median_s_scoring": scoring, "median_s_training": training,
      "train_flops": train_flops, "flops_formula": flops.TRAIN_FLOPS_FORMULA, **peaks,
      "mfu_training": flops.mfu(train_flops / training, peaks) if training > 0 else None}), flush=True)


if __name__ == "__main__":
  main()
