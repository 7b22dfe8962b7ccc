"""SFT from scratch on program-written rationales for 3-digit addition (the embedded default task).

`python -m rr.main --config configs/sft.py --workdir /tmp/sft`; `:runlocal` shrinks it to seconds.
Bar: >= 90% held-out eval/accuracy within 10 minutes on a 2-core CPU (README has the measured curve).
"""

from rr.config import base_config, parse_arg, shrink_for_runlocal


def get_config(arg=None):
  args = parse_arg(arg, runlocal=False)
  c = base_config()
  c.trainer = "sft"
  c.data.source = "task"
  c.data.task = "addition"
  c.data.difficulty = 3
  c.data.train_size = 20_000
  c.data.test_size = 500
  c.data.max_len = 64
  c.model.preset = "tiny"
  c.optim.lr = 1e-3
  c.optim.warmup_steps = 100
  c.train.steps = 2000
  c.train.batch_size = 64
  c.train.log_every = 50
  c.train.eval_every = 500
  c.train.checkpoint_every = 500
  c.eval.num_examples = 500
  c.eval.max_new_tokens = 64
  if args.runlocal:
    shrink_for_runlocal(c)
  return c
