"""GRPO on the embedded addition task, starting from any checkpoint (`--config.init_checkpoint=WORKDIR`).

`python -m rr.main --config configs/grpo.py --config.init_checkpoint=/tmp/sft --workdir /tmp/grpo`
The model preset and tokenizer must match the checkpoint's. The recipe of the default job's RL stage:
task correctness plus a small format reward, group-normalised advantages, DAPO's clip-higher, token-mean
loss and dynamic sampling, one optimiser step per batch of rollouts. Any `config.rl` field changes it.
`:mixed` is issue 14's harder task, addition of 1 to 6 digits (start from a `configs/sft.py:mixed` checkpoint).
"""

from rr.config import base_config, parse_arg, shrink_for_runlocal


def get_config(arg=None):
  args = parse_arg(arg, runlocal=False, mixed=False)
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
  if args.mixed:
    c.data.difficulty, c.data.difficulty_max = 1, 6
    c.data.max_len = 80  # the longest 6-digit example is 77 tokens
    c.eval.max_new_tokens = c.rl.max_new_tokens = 64  # its completion is 63 with eos
  if args.runlocal:
    shrink_for_runlocal(c)
    c.train.log_every = 1
  return c
