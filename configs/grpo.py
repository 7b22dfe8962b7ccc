"""GRPO on the embedded addition task, starting from any checkpoint (`--config.init_checkpoint=WORKDIR`).

`python -m rr.main --config configs/grpo.py --config.init_checkpoint=/tmp/sft --workdir /tmp/grpo`
The model preset and tokenizer must match the checkpoint's. The recipe of the default job's RL stage:
task correctness plus a small format reward, group-normalised advantages, DAPO's clip-higher, token-mean
loss and dynamic sampling, one optimiser step per batch of rollouts. Any `config.rl` field changes it.
`:mixed` is issue 14's harder task, addition of 1 to 6 digits (start from a `configs/sft.py:mixed` checkpoint);
`:mixed,task=countdown` (4-6 source numbers) and `:mixed,task=strings` (composition depths 1-5) are the others,
with configs/sft.py's MIXED_TASKS levels and lengths (start from `configs/sft.py:mixed,task=<the same>`).
"""

import os
import runpy

from rr.config import ConfigError, base_config, parse_arg, shrink_for_runlocal

SFT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sft.py")


def get_config(arg=None):
  args = parse_arg(arg, runlocal=False, mixed=False, task="")
  if args.task and not args.mixed:
    raise ConfigError(f"config argument task={args.task!r} picks the :mixed variant's task; pass mixed,task=...")
  c = base_config()
  c.trainer = "grpo"
  c.data.task = "addition"
  c.data.difficulty = 3
  c.model.preset = "tiny"
  c.optim.lr = 5e-5
  c.optim.warmup_steps = 30
  c.optim.weight_decay = 0.0
  c.train.steps = 300
  c.train.log_every = 5
  c.train.eval_every = 50
  c.train.checkpoint_every = 50
  c.eval.num_examples = 500
  c.eval.max_new_tokens = 48
  c.rl.prompts_per_step = 8
  c.rl.group_size = 8
  c.rl.max_new_tokens = 48
  c.rl.eps_high = 0.28
  c.rl.aggregation = "token-mean"
  c.rl.dynamic_sampling = True
  if args.mixed:  # the SFT config's table, so an RL run fits the examples its checkpoint was trained on
    task = runpy.run_path(SFT_CONFIG)["mixed_task"](args.task or "addition")
    c.data.task = args.task or "addition"
    c.data.difficulty, c.data.difficulty_max = task.difficulty, task.difficulty_max
    c.data.max_len = task.max_len
    c.eval.max_new_tokens = c.rl.max_new_tokens = task.max_new_tokens
  if args.runlocal:
    shrink_for_runlocal(c)
    c.train.log_every = 1
  return c
