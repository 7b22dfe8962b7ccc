"""SFT from scratch on program-written rationales for 3-digit addition (the embedded default task).

`python -m rr.main --config configs/sft.py --workdir /tmp/sft`; `:runlocal` shrinks it to seconds.
Bar: >= 90% held-out eval/accuracy within 10 minutes on a 2-core CPU (docs/results.md has the measured curve).
`:mixed` is issue 14's harder task: addition of 1 to 6 digits, each question's level drawn uniformly, with
held-out accuracy per level (eval/accuracy/difficulty_<d>). `:mixed,task=countdown` draws 4-6 source numbers,
`:mixed,task=strings` composition depths 1-5 (MIXED_TASKS).
"""

import collections

from rr.config import ConfigError, base_config, parse_arg, shrink_for_runlocal

MixedTask = collections.namedtuple("MixedTask", "difficulty difficulty_max max_len max_new_tokens")
# Issue 14's harder tasks. max_len holds the longest prompt + completion + eos, max_new_tokens the longest
# completion + eos, in char-tokenizer tokens. Measured by generating train splits of 20,000 and test splits of 500
# for seeds 0-3 (rr.tasks.make_split at the levels below), encoding format_prompt(question) and
# format_completion(example) with rr.data.CharTokenizer, and checked against the worst case each generator allows.
MIXED_TASKS = {
    # the longest 6-digit example is 77 tokens, its completion 63 with eos
    "addition": MixedTask(1, 6, max_len=80, max_new_tokens=64),
    # longest measured 114 / 87 (6 sources); the worst case the generator allows is 122 / 93 (six 3-digit sources,
    # 3-digit results, every inner step parenthesised in the answer)
    "countdown": MixedTask(4, 6, max_len=128, max_new_tokens=96),
    # longest 195 / 163, the worst case: depth 5 on 6 letters with "dup" innermost (12 letters in every step)
    "strings": MixedTask(1, 5, max_len=200, max_new_tokens=168),
}


def mixed_task(name: str) -> MixedTask:
  """The `:mixed` variant's levels and lengths for task `name` (configs/grpo.py reads them too)."""
  if name not in MIXED_TASKS:
    raise ConfigError(f"config argument task={name!r} is not one of {', '.join(MIXED_TASKS)}; pass e.g. "
                      "mixed,task=countdown")
  return MIXED_TASKS[name]


def get_config(arg=None):
  args = parse_arg(arg, runlocal=False, mixed=False, task="")
  if args.task and not args.mixed:
    raise ConfigError(f"config argument task={args.task!r} picks the :mixed variant's task; pass mixed,task=...")
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
    task = mixed_task(args.task or "addition")
    c.data.task = args.task or "addition"
    c.data.difficulty, c.data.difficulty_max = task.difficulty, task.difficulty_max
    c.data.max_len = task.max_len
    c.eval.max_new_tokens = task.max_new_tokens
  if args.runlocal:
    shrink_for_runlocal(c)
  return c
