"""Prints the distil-then-reinforce tables of the README and docs/results.md from the runs of
experiments/distil_then_reinforce.sh: mean +- std (population) over seeds, then each seed's numbers, so the spread
is in plain view.

Usage: python experiments/summarize_distil_then_reinforce.py DIR SEED [SEED ...]
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

K = (1, 2, 4, 8, 16)


def _load(path: str) -> dict:
  with open(path) as f:
    return json.load(f)


def _wall(run: str, name: str) -> float:
  with open(os.path.join(run, f"{name}_wall_seconds")) as f:
    return float(f.read())


def _cell(values) -> str:
  values = np.asarray(values, np.float64)
  return f"{values.mean():.3f} ± {values.std():.3f}"


def main(directory: str, seeds: list[str]) -> None:
  runs = [os.path.join(directory, f"seed{seed}") for seed in seeds]
  jobs = [_load(os.path.join(r, "default", "summary.json")) for r in runs]
  same = [_load(os.path.join(r, "sft_same_budget", "summary.json")) for r in runs]
  evals = {stage: [_load(os.path.join(r, "default", stage, "eval", "eval.json")) for r in runs]
           for stage in ("sft", "grpo")}
  sft_steps, rl_steps = jobs[0]["sft/step"], jobs[0]["grpo/step"]
  print(f"seeds: {', '.join(seeds)}; mean ± std over seeds\n")
  print("| run | held-out accuracy | per seed | wall time (mean) |")
  print("|---|---:|---|---:|")
  rows = [
      (f"SFT only: 300 rationales, {sft_steps} steps (the job's stage 1)",
       [j["eval/accuracy_initial"] for j in jobs], np.mean([j["sft/wall_seconds"] for j in jobs])),
      (f"**SFT + GRPO: stage 1, then {rl_steps} GRPO steps (the default job)**",
       [j["eval/accuracy"] for j in jobs], np.mean([_wall(r, "default") for r in runs])),
      (f"SFT only, same wall time: 300 rationales, {int(np.mean([s['step'] for s in same]))} steps",
       [s["eval/accuracy"] for s in same], np.mean([_wall(r, "sft_same_budget") for r in runs])),
  ]
  for name, values, seconds in rows:
    print(f"| {name} | {_cell(values)} | {', '.join(f'{v:.3f}' for v in values)} | {seconds:.0f} s |")
  gains = [j["eval/accuracy"] - j["eval/accuracy_initial"] for j in jobs]
  print(f"\nRL gain over its SFT start: {_cell(gains)} ({', '.join(f'{g:+.3f}' for g in gains)})")
  print("\n| k | SFT pass@k | maj@k | CoT-pass@k | SFT + GRPO pass@k | maj@k | CoT-pass@k |")
  print("|---:|---:|---:|---:|---:|---:|---:|")
  for k in K:
    cells = [_cell([e[f"{metric}@{k}"] for e in evals[stage]])
             for stage in ("sft", "grpo") for metric in ("pass", "maj", "cot_pass")]
    print(f"| {k} | " + " | ".join(cells) + " |")
  for stage in ("sft", "grpo"):
    greedy = [e["accuracy"] for e in evals[stage]]
    steps = [e["step_accuracy"] for e in evals[stage]]
    print(f"\n{stage}: greedy accuracy {_cell(greedy)}, step accuracy {_cell(steps)}; per seed "
          + "; ".join(f"{g:.3f}/{s:.3f}" for g, s in zip(greedy, steps)))


if __name__ == "__main__":
  main(sys.argv[1], sys.argv[2:])
