"""Teacher data: k rationales per train question sampled from a teacher, filtered, written with provenance.

`python -m rr.main --config configs/teach.py:teacher=DIR --workdir /tmp/teach` writes /tmp/teach/data.jsonl;
train a student on it with `--config.data.rationales_path=/tmp/teach` (same data config and seed) or read it as
`data.source=jsonl`. DIR is an rr run's --workdir (the tokenizer its config.json names; char without one) or
a Hugging Face model directory (its own tokenizer and chat template). Arguments: `task=addition` (an embedded task) or `train=PATH,format=gsm8k`
(a .jsonl / .parquet file); `samples=K` rationales per question (default 4); `runlocal` (8 questions, k=2,
16-token completions: seconds). Filters are config.teach.filters (default: the verifier, then dedup); e.g.
`--config.teach.filters=correct,consistent,dedup --config.teach.rationalise=True` for STaR.
A stopped run resumes when started again with the same command; docs/methods.md, "Teacher data".
"""

import json
import os

from rr.checkpoint import directory_kind
from rr.config import (ConfigError, base_config, parse_arg, read_run_config, run_config_files, shrink_for_runlocal,
                       use_data_files)


def get_config(arg=None):
  args = parse_arg(arg, teacher="", task="addition", train="", format="rationale", samples=0, runlocal=False)
  if not args.teacher:
    raise ConfigError("configs/teach.py needs the teacher: --config configs/teach.py:teacher=DIR (an rr run's "
                      "--workdir or a local Hugging Face model directory)")
  c = base_config()
  c.trainer = "teach"
  c.teach.teacher = args.teacher
  c.data.task = args.task
  if args.train:
    use_data_files(c, args.train, "", args.format)
  c.data.test_size = 16  # only the train questions are sampled
  c.eval.num_examples = 16
  c.teach.samples = args.samples or 4
  c.teach.questions_per_chunk = 64
  c.teach.max_new_tokens = 40  # an embedded task's rationale and answer: 3-digit addition needs 33 with eos
  kind = directory_kind(args.teacher)
  if kind == "hf":
    c.tokenizer.kind = "hf"
    c.tokenizer.path = args.teacher
    c.tokenizer.chat_template = has_chat_template(args.teacher)
  elif kind == "rr" and run_config_files(args.teacher):  # the tokenizer the teacher was trained with
    trained = read_run_config(run_config_files(args.teacher)[-1])
    c.tokenizer = trained.tokenizer
    c.tokenizer.path = trained.tokenizer.path or trained.model.hf_path
  if c.tokenizer.kind == "hf":
    c.teach.teacher_dtype = "bfloat16"
    c.teach.max_new_tokens = 384
  if args.runlocal:
    shrink_for_runlocal(c)
    c.data.train_size = 8
    c.teach.samples = args.samples or 2
    c.teach.max_new_tokens = 16
    c.teach.questions_per_chunk = 4
    c.teach.teacher_dtype = "float32"
  return c


def has_chat_template(model_dir: str) -> bool:
  """Whether the directory's tokenizer files hold a chat template (read without loading transformers)."""
  if any(os.path.isfile(os.path.join(model_dir, name)) for name in ("chat_template.jinja", "chat_template.json")):
    return True
  try:
    with open(os.path.join(model_dir, "tokenizer_config.json")) as f:
      return bool(json.load(f).get("chat_template"))
  except (OSError, ValueError):
    return False
