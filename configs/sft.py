"""SFT from scratch on program-written rationales for 3-digit addition (the embedded default task).

`python -m rr.main --config configs/sft.py --workdir /tmp/sft`; `:runlocal` shrinks it to seconds.
Bar: >= 90% held-out eval/accuracy within 10 minutes on a 2-core CPU (README has the measured curve).
`:mixed` is issue 14's harder task: addition of 1 to 6 digits, each question's level drawn uniformly, with
held-out accuracy per level (eval/accuracy/difficulty_<d>).
"""

from rr.config import base_config, parse_arg, shrink_for_runlocal


def get_config(arg=None):
  args = parse_arg(arg, runlocal=False, mixed=False)
  c = base_config()
  c.trainer = "sft"
  c.data.source = "task"
  c.data.task = "addition"
  c.data.difficulty = 3
  c.data.train_size = 20_000
  c.data.test_size = 500
  c.data.max_len = 48  # the longest 3-digit example is 41 tokens
  c.model.preset = "tiny"
  c.optim.lr = 1e-3
  c.optim.warmup_steps = 50
  c.train.steps = 800
  c.train.batch_size = 64
  c.train.log_every = 50
  c.train.eval_every = 200
  c.train.checkpoint_every = 200
  c.eval.num_examples = 500
  c.eval.max_new_tokens = 48
  if args.mixed:
    c.data.difficulty, c.data.difficulty_max = 1, 6
    c.data.max_len = 80  # the longest 6-digit example is 77 tokens
    c.eval.max_new_tokens = 64  # its completion is 63 with eos
  if args.runlocal:
    shrink_for_runlocal(c)
  return c
