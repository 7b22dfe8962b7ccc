"""Curricula over task compositions (issue 14, method 7; "From f(x) and g(x) to f(g(x))"): RL's gain at each depth.

`python -m rr.experiment experiments/composition_rl.py --dir /tmp/rr_composition_rl` (`:runlocal` for the suite).
The task is strings (rr/tasks/strings.py): a composition of k string functions, k the depth.

  sft          the `tiny` preset after SFT_STEPS steps of SFT on depths 1 and 2 (configs/sft.py:mixed,task=strings with
               data.difficulty 1, difficulty_max 2, lr 2e-3), tested on depths 1 to 5 (data.test_difficulty 1,
               test_difficulty_max 5): the single functions and their pairs, never a deeper composition.
  grpo_depth2  plain GRPO (configs/grpo.py:mixed,task=strings) from it on depth-2 compositions only, RL_STEPS steps,
               seeds 0-2 (the seed draws the rollouts; data.seed = 0 fixes the questions).

Each depth's held-out accuracy (greedy, 100 questions a depth) before RL is the run's step-0 evaluation of the SFT
checkpoint (every seed evaluates the same checkpoint on the same questions), after RL its final one; the gain is
after - before, per seed.
"""

import os
import runpy

from rr.config import parse_arg
from rr.experiment import ACCURACY, WALL_SECONDS, Column, Experiment, Method, Shared, curve

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIGS = os.path.join(os.path.dirname(HERE), "configs")
SFT_STEPS = 800
RL_STEPS = 60
DEPTHS = (1, 2, 3, 4, 5)
TRAIN_DEPTHS = (1, 2)  # SFT's; RL trains on the deeper of them
# Depths 1-2 (configs/sft.py's way of measuring): the longest example is 87 tokens, its completion 70 with eos. SFT
# rows are then at most 88 wide (not the depth-5 200), and RL samples 72; evaluation keeps the depth-5 length.
DEPTH12_MAX_LEN = 88
DEPTH2_NEW_TOKENS = 72


def load_config(name: str, arg: str):
  return runpy.run_path(os.path.join(CONFIGS, name))["get_config"](arg)


def on_depths(c, train_low: int, train_high: int):
  """Train on depths train_low..train_high, test on every depth of DEPTHS (100 questions each at full size)."""
  c.data.seed = 0
  c.data.difficulty, c.data.difficulty_max = train_low, train_high
  c.data.test_difficulty, c.data.test_difficulty_max = DEPTHS[0], DEPTHS[-1]
  return c


def depth_columns(depth: int) -> list[Column]:
  """Depth `depth`'s accuracy before RL (the step-0 evaluation), after (the final one) and the gain."""
  key = f"eval/accuracy/difficulty_{depth}"

  def before(summary: dict, run_dir: str):
    return next((value for step, value in curve(run_dir, key) if step == 0), None)

  def after(summary: dict, run_dir: str):
    return summary.get(key)

  def gain(summary: dict, run_dir: str):
    first, last = before(summary, run_dir), after(summary, run_dir)
    return None if first is None or last is None else last - first

  return [Column(f"depth {depth} before", before), Column(f"depth {depth} after", after),
          Column(f"depth {depth} gain", gain)]


def get_experiment(arg=None):
  args = parse_arg(arg, runlocal=False)
  small = args.runlocal
  variant = "mixed,task=strings" + (",runlocal" if small else "")

  def sft(paths):
    c = on_depths(load_config("sft.py", variant), *TRAIN_DEPTHS)
    c.seed = 0
    c.optim.lr = 2e-3
    c.data.max_len = DEPTH12_MAX_LEN
    c.train.steps = 6 if small else SFT_STEPS
    c.train.eval_every = 0
    c.train.checkpoint_every = c.train.steps
    c.data.test_size = 25 if small else 500  # 25: every depth among them (data.seed 0)
    c.eval.num_examples = c.data.test_size
    return c

  def grpo_depth2(seed, paths):
    c = on_depths(load_config("grpo.py", variant), TRAIN_DEPTHS[-1], 0)
    c.seed = seed
    c.init_checkpoint = paths["sft"]
    c.rl.max_new_tokens = 16 if small else DEPTH2_NEW_TOKENS
    c.train.steps = 2 if small else RL_STEPS
    c.optim.warmup_steps = 1 if small else 10
    c.train.eval_every = 0  # the step-0 evaluation (before RL) and the final one (after)
    c.train.checkpoint_every = c.train.steps
    c.data.test_size = 25 if small else 500  # 25: every depth among them (data.seed 0)
    c.eval.num_examples = c.data.test_size
    return c

  return Experiment(
      name="composition_rl_runlocal" if small else "composition_rl",
      seeds=(0,) if small else (0, 1, 2),
      methods=[Method("grpo_depth2", grpo_depth2, "plain GRPO on depth 2")],
      shared=[Shared("sft", sft)],
      columns=[ACCURACY, *(column for depth in DEPTHS for column in depth_columns(depth)), WALL_SECONDS],
  )
