"""Do two commits of rr train the same numbers? Short GRPO-family runs through the public API, for refactors.

`python benchmarks/same_numbers.py OUT.json` runs 3-step `configs/grpo.py:runlocal` jobs for plain GRPO, KL in its
three modes, mu = 2, PPO, PPO with mu = 2, and an entropy bonus with RLOO (a registered `digits` reward makes
groups differ), and writes each run's logged rows and the sum of its final params. Run it from the root of
each commit's tree (it imports the rr found there, so one copy of this file serves an older commit too:
`cd BASE_TREE && python NEW_TREE/benchmarks/same_numbers.py before.json`), then `python benchmarks/same_numbers.py --compare BEFORE.json AFTER.json` prints the differences
as JSON lines. Issue 11's redesign was checked this way (bitwise-equal params except the entropy term's 3e-8).
"""

import argparse
import json
import os
import sys
import tempfile

sys.path.insert(0, os.getcwd())  # the rr of the tree this runs in, which may be another commit than this file's

VARIANTS = {
    "grpo": [],
    "kl_gradient": [("rl.kl_beta", "0.05")],
    "kl_loss": [("rl.kl_beta", "0.05"), ("rl.kl_mode", "loss")],
    "kl_reward": [("rl.kl_beta", "0.05"), ("rl.kl_mode", "reward")],
    "mu2": [("rl.epochs", "2")],
    "ppo": [("rl.advantage", "ppo")],
    "ppo_mu2": [("rl.advantage", "ppo"), ("rl.epochs", "2")],
    "entropy_rloo": [("rl.entropy_coef", "0.01"), ("rl.advantage", "rloo")],
}
TIMING = ("seconds", "tokens_per_s")  # wall-clock metrics differ between any two runs


def capture(out_path: str) -> None:
  import jax
  import numpy as np

  import rr.rewards
  from rr import train
  from rr.checkpoint import Checkpoints
  from rr.config import load_config

  rr.rewards.register("digits")(lambda prompt, completion, example: 0.1 * sum(c.isdigit() for c in completion))
  out = {}
  for name, overrides in VARIANTS.items():
    workdir = tempfile.mkdtemp()
    config = load_config("configs/grpo.py:runlocal", [
        ("train.steps", "3"), ("train.eval_every", "0"), ("eval.num_examples", "4"), ("rl.max_new_tokens", "8"),
        ("rl.rewards", "correctness,digits"), ("rl.reward_weights", "1,1"), *overrides])
    train.run(config, workdir)
    rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    checkpoints = Checkpoints(os.path.join(workdir, "checkpoints"))
    leaves = [np.asarray(x, np.float64) for x in jax.tree.leaves(checkpoints.read_params(checkpoints.latest_step()))]
    out[name] = {"rows": rows, "param_sum": float(sum(x.sum() for x in leaves))}
  with open(out_path, "w") as f:
    json.dump(out, f, indent=1)


def compare(before_path: str, after_path: str) -> None:
  before, after = json.load(open(before_path)), json.load(open(after_path))
  for name in before:
    a, b = before[name], after[name]
    rows = [(x, y) for x, y in zip(a["rows"], b["rows"]) if "train/loss" in x and "train/loss" in y]
    worst = max((abs(v - y[k]) / (abs(v) + 1e-3) for x, y in rows for k, v in x.items()
                 if k in y and not any(t in k for t in TIMING)), default=0.0)
    print(json.dumps({"variant": name, "param_sum_before": a["param_sum"], "param_sum_after": b["param_sum"],
                      "param_sum_diff": abs(a["param_sum"] - b["param_sum"]), "worst_metric_rel_diff": worst}))


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("out", nargs="?", help="where to write this commit's numbers (JSON)")
  ap.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"))
  a = ap.parse_args()
  if a.compare:
    compare(*a.compare)
  elif a.out:
    capture(a.out)
  else:
    ap.error("pass OUT.json, or --compare BEFORE.json AFTER.json")


if __name__ == "__main__":
  main()
