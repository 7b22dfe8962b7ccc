"""Demonstration-guided RL and curricula against plain GRPO (issue 14), from one SFT checkpoint, at one budget.

`python -m rr.experiment experiments/guided_rl.py --dir /tmp/rr_guided_rl` (`:runlocal` is the seconds-long variant
the test suite runs), then `python experiments/guided_rl.py --plot /tmp/rr_guided_rl` for the plot of held-out
accuracy against sampled tokens (rr.experiment's own curves are against steps only).

  sft      the `tiny` preset after SFT_STEPS steps of configs/sft.py:mixed (addition of 1 to 6 digits, lr 2e-3):
           few enough that it is right on most 1-4 digit questions and on few 5-6 digit ones, so plain GRPO from it
           meets many groups whose 8 rollouts all fail. Trained once, shared by every method.
  methods  configs/guided_rl.py's grpo, guide, prefix_rft, relift, sasr and sec from that checkpoint, seeds 0-2 (the
           seed draws the rollouts; data.seed = 0 fixes the questions, so every run reads the SFT run's splits).
           Every run stops once it has sampled BUDGET_TOKENS completion tokens (rl.max_sampled_tokens: hinted
           resamples and prefixed continuations count, demonstration tokens do not); train.steps is an upper
           bound it never reaches (Prefix-RFT's is PREFIX_SCHEDULE_STEPS, the length of its prefix schedule), and the
           learning rate is constant after warm-up so where the budget stops a run does not change its schedule.

Columns: held-out accuracy (greedy, 500 questions), accuracy on 6-digit questions, pass@8 (8 samples at T = 1 on
200 questions), the mean over steps of train/frac_all_failed (groups whose rollouts all failed, before any
guidance), the demonstration tokens used and the completion tokens sampled (the run's totals), RL steps, wall time.
"""

import os
import runpy
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
if __name__ == "__main__":  # the --plot command, run as a script: rr from this checkout
  sys.path.insert(0, os.path.dirname(HERE))

from rr.config import parse_arg
from rr.experiment import (ACCURACY, WALL_SECONDS, Column, Experiment, Method, PassAtK, Shared, curve,
                           pass_at_k_column, summary_column)
from rr.experiment.results import save_plot

CONFIGS = os.path.join(os.path.dirname(HERE), "configs")
SFT_STEPS = 300  # tuned: see the README's "Guided RL and curricula, measured"
BUDGET_TOKENS = 400_000  # completion tokens sampled per run
STEP_BOUND = 300  # train.steps: above what any method needs to spend BUDGET_TOKENS
# Prefix-RFT's low_t cosine runs over train.steps (rr/train/prefix_rft.py), so its bound is about the steps the budget
# lasts (plain GRPO spends it in 70-72), for the schedule to reach its end; a run that stops here first has sampled
# less, which the sampled-tokens column shows
PREFIX_SCHEDULE_STEPS = 80
HARDEST = 6  # digits: configs/sft.py's MIXED_TASKS["addition"].difficulty_max
PLOT = "guided_rl_accuracy_vs_tokens.png"
LABELS = {
    "grpo": "plain GRPO",
    "guide": "Guide (hint on all-failed groups)",
    "prefix_rft": "Prefix-RFT (1 prefixed rollout a group)",
    "relift": "ReLIFT (SFT on buffered all-failed questions)",
    "sasr": "SASR-style SFT/RL switching",
    "sec": "SEC curriculum over the 6 levels",
}


def load_config(name: str, arg: str):
  return runpy.run_path(os.path.join(CONFIGS, name))["get_config"](arg)


def metric_mean_column(key: str, title: str, digits: int = 3) -> Column:
  """The mean of `key` over the rows of the run's metrics.jsonl (every step's, at train.log_every = 1)."""

  def value(summary: dict, run_dir: str):
    values = [v for _, v in curve(run_dir, key)]
    return float(np.mean(values)) if values else None

  return Column(title, value, digits)


def get_experiment(arg=None):
  args = parse_arg(arg, runlocal=False)
  small = args.runlocal
  methods = runpy.run_path(os.path.join(CONFIGS, "guided_rl.py"))["METHODS"]

  def sft(paths):
    c = load_config("sft.py", "mixed,runlocal" if small else "mixed")
    c.seed = 0
    c.data.seed = 0
    c.optim.lr = 2e-3
    c.train.steps = 6 if small else SFT_STEPS
    c.train.eval_every = 0
    c.train.checkpoint_every = c.train.steps
    return c

  def method_config(method: str):
    def config(seed, paths):
      c = load_config("guided_rl.py", f"method={method}" + (",runlocal" if small else ""))
      c.seed = seed  # the rollouts' randomness; the params start from the shared checkpoint
      c.data.seed = 0  # the SFT run's questions
      c.init_checkpoint = paths["sft"]
      c.rl.max_sampled_tokens = 160 if small else BUDGET_TOKENS
      c.train.steps = 2 if small else PREFIX_SCHEDULE_STEPS if method == "prefix_rft" else STEP_BOUND
      c.optim.min_lr_ratio = 1.0  # constant after warm-up: the budget, not train.steps, ends the run
      c.optim.warmup_steps = 1 if small else 10
      c.train.log_every = 1  # every step's counts: the plot's token axis and the all-failed mean
      c.train.eval_every = 0 if small else 10  # runlocal: the step-0 and final evaluations only
      c.train.checkpoint_every = c.train.steps
      c.eval.num_examples = 16 if small else 500  # runlocal: 16 holds a 6-digit question
      return c
    return config

  return Experiment(
      name="guided_rl_runlocal" if small else "guided_rl",
      seeds=(0,) if small else (0, 1, 2),
      methods=[Method(m, method_config(m), LABELS[m]) for m in methods],
      shared=[Shared("sft", sft)],
      columns=[ACCURACY, summary_column(f"eval/accuracy/difficulty_{HARDEST}", f"accuracy, {HARDEST} digits"),
               pass_at_k_column(8), metric_mean_column("train/frac_all_failed", "all-failed groups"),
               summary_column("total/demo_tokens", "demo tokens", 0),
               summary_column("total/sampled_tokens", "sampled tokens", 0),
               summary_column("step", "RL steps", 0), WALL_SECONDS],
      pass_at_k=PassAtK(ks=(1, 8), num_examples=4 if small else 200),
  )


# ------------------------------------------------------------------------------------------ the token plot


def accuracy_against_tokens(run_dir: str) -> list[tuple[float, float]]:
  """(completion tokens sampled so far, eval/accuracy) at each evaluation of a run: the step-0 evaluation at 0
  tokens, each later one at train/total_sampled_tokens of the step it follows (logged every step)."""
  tokens = dict(curve(run_dir, "train/total_sampled_tokens"))
  tokens[0] = 0.0
  return [(tokens[step], accuracy) for step, accuracy in curve(run_dir, "eval/accuracy") if step in tokens]


def plot_accuracy_against_tokens(directory: str, out: str, methods=None, seeds=(0, 1, 2)) -> str | None:
  """eval/accuracy against sampled tokens: each seed thin, the mean over seeds (interpolated onto the tokens every
  seed reached) thick, one colour per method. Returns `out`, or None when no run has evaluations."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  methods = methods or list(LABELS)
  fig, ax = plt.subplots(figsize=(6.4, 4.0))
  drawn = False
  for number, method in enumerate(methods):
    runs = [accuracy_against_tokens(os.path.join(directory, method, f"seed{s}")) for s in seeds]
    runs = [points for points in runs if len(points) > 1]
    if not runs:
      continue
    colour = f"C{number % 10}"
    for points in runs:
      ax.plot([x for x, _ in points], [y for _, y in points], color=colour, linewidth=0.7, alpha=0.4)
    grid = np.linspace(0.0, min(points[-1][0] for points in runs), 40)
    mean = np.mean([np.interp(grid, [x for x, _ in p], [y for _, y in p]) for p in runs], axis=0)
    ax.plot(grid, mean, color=colour, linewidth=2.0, label=f"{LABELS.get(method, method)} ({len(runs)} seeds)")
    drawn = True
  if not drawn:
    plt.close(fig)
    return None
  return save_plot(fig, ax, out, "completion tokens sampled", "held-out accuracy (greedy)",
                   "mixed 1-6 digit addition: each seed thin, the mean thick", legend_size=7, dpi=90)


if __name__ == "__main__":
  if len(sys.argv) != 3 or sys.argv[1] != "--plot":
    sys.exit("usage: python experiments/guided_rl.py --plot DIR (an experiments/guided_rl.py run's --dir)")
  written = plot_accuracy_against_tokens(sys.argv[2], os.path.join(sys.argv[2], PLOT))
  print(written or f"no evaluations under {sys.argv[2]}")
