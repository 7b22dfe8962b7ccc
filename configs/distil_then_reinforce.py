"""Distil, then reinforce: SFT on a small share of teacher rationales, then GRPO on all train questions.

`python -m rr.main --config configs/distil_then_reinforce.py --workdir /tmp/dtr`
summary.json: eval/accuracy_initial (after SFT) and eval/accuracy (after GRPO); sft/ and grpo/ hold each
stage's own reports. Work in progress (issue 3): the share, steps and gain are still being measured.
"""

import os
import runpy

from rr.config import parse_arg


def get_config(arg=None):
  args = parse_arg(arg, runlocal=False)
  here = os.path.dirname(os.path.abspath(__file__))
  c = runpy.run_path(os.path.join(here, "sft.py"))["get_config"]("runlocal" if args.runlocal else None)
  c.trainer = "distil_then_reinforce"
  c.data.sft_size = 200
  c.train.steps = 200
  c.train.eval_every = 100
  c.train.checkpoint_every = 100
  c.rl.steps = 150
  c.rl.lr = 3e-5
  c.train.log_every = 10
  if args.runlocal:
    c.data.sft_size = 64
    c.train.steps = 12
    c.train.eval_every = 0
    c.train.log_every = 2
    c.rl.steps = 4
    c.rl.prompts_per_step = 2
    c.rl.group_size = 4
    c.rl.max_new_tokens = 16
  return c
