"""ReST-EM / expert iteration (2312.06585) as a job of stages: sample from the current model, keep what the
verifier accepts, fine-tune from the base model on it, repeat.

`python -m rr.main --config configs/rest_em.py:rounds=2 --workdir /tmp/rest_em`
Stages: `base` is SFT of the `tiny` student on the first 300 program rationales of 3-digit addition (the recipe
of configs/distil_then_reinforce.py's sft stage); then per round r, `sample_r` (trainer teach) samples k=4
rationales for each of the 2,000 train questions from the stage before (base, then train_{r-1}) and keeps the
correct ones, once each, and `train_r` fine-tunes the base stage's checkpoint (not the last round's: the "EM"
of ReST-EM) on them (data.rationales_path = sample_r's records). summary.json holds each round's
sample_r/records, sample_r/teacher_accuracy (the current model's pass rate on train questions at T=1) and
train_r/eval/accuracy (held-out). `:runlocal` is the same job in seconds (rounds=1 by default): the 12-step
base solves nothing, so its round keeps every finished, parsed, distinct rationale (filters "dedup") to still
run every code path.
"""

import os
import runpy

from rr.config import ConfigError, parse_arg


def get_config(arg=None):
  args = parse_arg(arg, rounds=0, runlocal=False)
  rounds = args.rounds or (1 if args.runlocal else 2)
  if rounds < 1:
    raise ConfigError(f"configs/rest_em.py: rounds={args.rounds} must be >= 1")
  here = os.path.dirname(os.path.abspath(__file__))
  c = runpy.run_path(os.path.join(here, "sft.py"))["get_config"]("runlocal" if args.runlocal else None)
  c.trainer = "stages"
  c.optim.lr = 2e-3  # the SFT recipe of configs/distil_then_reinforce.py, for the base and every round
  c.train.steps = 800
  c.train.eval_every = 100
  c.train.checkpoint_every = 200
  c.train.log_every = 10
  c.data.train_size = 2000  # the questions each round samples; the base sees a prefix of them
  c.teach.samples = 4
  c.teach.temperature = 1.0
  c.teach.max_new_tokens = 40  # data.max_len 48 less the 8-token prompt: every record fits an SFT row
  c.teach.filters = "correct,dedup"
  c.teach.questions_per_chunk = 250
  c.stage.base = {"trainer": "sft", "data": {"train_size": 300}}
  names = ["base"]
  for r in range(1, rounds + 1):
    c.stage[f"sample_{r}"] = {"trainer": "teach"}  # its teacher: init_checkpoint, the stage before
    c.stage[f"train_{r}"] = {"trainer": "sft", "init_checkpoint": "stage:base",
                             "data": {"rationales_path": f"stage:sample_{r}"}}
    names += [f"sample_{r}", f"train_{r}"]
  c.stages = ",".join(names)
  if args.runlocal:
    c.train.steps = 12
    c.train.eval_every = 0
    c.train.log_every = 2
    c.data.train_size = 16
    c.stage.base.data.train_size = 16
    c.teach.samples = 2
    c.teach.questions_per_chunk = 8
    c.teach.filters = "dedup"
  return c
