"""SFT on your own data: JSONL files with one {"question", "answer", optional "rationale"} object per line.

`python -m rr.main --config configs/sft_jsonl.py:train=PATH,test=PATH --workdir /tmp/mine`
Answers are scored by exact match (whitespace-normalised). Rows without a rationale train on the answer only.
"""

from rr.config import ConfigError, base_config, parse_arg, shrink_for_runlocal


def get_config(arg=None):
  args = parse_arg(arg, runlocal=False, train="", test="")
  if not (args.train or args.test):
    raise ConfigError("configs/sft_jsonl.py needs a file: --config configs/sft_jsonl.py:train=PATH,test=PATH "
                      "(test=PATH alone to evaluate)")
  c = base_config()
  c.trainer = "sft"
  c.data.source = "jsonl"
  c.data.train_path = args.train
  c.data.test_path = args.test
  c.data.max_len = 256
  c.model.preset = "tiny"
  c.train.steps = 1000
  c.train.batch_size = 32
  c.train.eval_every = 250
  c.train.checkpoint_every = 250
  c.eval.num_examples = 200
  c.eval.max_new_tokens = 128
  if args.runlocal:
    shrink_for_runlocal(c)
    c.data.max_len = 256
  return c
