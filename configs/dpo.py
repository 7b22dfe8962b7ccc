"""Contrastive rationale distillation (trainer "dpo"; DPO 2305.18290, QCRD 2405.13014) on 3-digit addition: the
program teacher's rationale is chosen, the student's own wrong sample of the same question rejected.

`python -m rr.main --config configs/dpo.py --workdir /tmp/dpo` is a job of three stages (docs/methods.md):
  sft        the baseline, configs/sft.py's recipe (SFT of the tiny student on the program rationales)
  negatives  trainer teach: k=4 samples (T=1) of the sft stage per question of the DPO split, kept when finished,
             parsed and wrong (teach.filters=wrong,dedup)
  dpo        trainer dpo from the sft stage's checkpoint (also the frozen reference) on those pairs
Its summary holds sft/eval/accuracy (the baseline) and dpo/eval/accuracy. Arguments:
  init=DIR                   skip the sft stage: DIR (an SFT --workdir) is sampled and refined
  init=DIR,negatives=PATH    the dpo trainer alone, from DIR, on a teach run's --workdir (or data.jsonl) PATH
  runlocal                   seconds of work (the sft stage trains longer than configs/sft.py:runlocal, so that
                             its samples finish and parse, and some are wrong)
The dpo stage's numbers (lr, steps, beta) are a starting point, not measured.
"""

import os
import runpy

from rr.config import ConfigError, parse_arg

DPO_QUESTIONS = 2000  # train questions the negatives stage samples and the pairs come from


def get_config(arg=None):
  args = parse_arg(arg, init="", negatives="", runlocal=False)
  if args.negatives and not args.init:
    raise ConfigError("configs/dpo.py: negatives=PATH needs init=DIR, the SFT --workdir whose samples they are (the "
                      "dpo trainer starts from it and uses it as the frozen reference)")
  here = os.path.dirname(os.path.abspath(__file__))
  sft = runpy.run_path(os.path.join(here, "sft.py"))["get_config"]("runlocal" if args.runlocal else None)
  c = sft.copy_and_resolve_references()
  sft_stage = {"trainer": "sft", "data": {"train_size": sft.data.train_size},
               "optim": {"lr": sft.optim.lr, "warmup_steps": sft.optim.warmup_steps},
               "train": {"steps": sft.train.steps, "eval_every": sft.train.eval_every,
                         "checkpoint_every": sft.train.checkpoint_every}}
  # the dpo stage (and the job's defaults)
  c.trainer = "dpo"
  c.data.train_size = DPO_QUESTIONS
  c.optim.lr = 1e-4
  c.optim.warmup_steps = 10
  c.train.steps = 200
  c.train.batch_size = 64  # 32 pairs
  c.train.log_every = 10
  c.train.eval_every = 50
  c.train.checkpoint_every = 100
  c.dpo.beta = 0.1
  c.dpo.nll_weight = 1.0
  # the negatives stage
  c.teach.samples = 4
  c.teach.temperature = 1.0
  c.teach.max_new_tokens = 40  # data.max_len 48 less the 8-token prompt: every record fits a pair row
  c.teach.filters = "wrong,dedup"
  c.teach.questions_per_chunk = 250
  if args.runlocal:
    c.data.train_size = 16
    c.train.steps = 6
    c.train.log_every = 1
    c.train.eval_every = 0
    c.train.checkpoint_every = 3
    c.optim.warmup_steps = 1
    c.optim.lr = 1e-3
    c.teach.samples = 4
    c.teach.questions_per_chunk = 16
    sft_stage["train"].update(steps=60, eval_every=0, checkpoint_every=60)
    sft_stage["optim"]["lr"] = 3e-3
  if args.init:
    c.init_checkpoint = args.init
    if args.negatives:
      c.dpo.negatives = args.negatives
      return c
    c.trainer = "stages"
    c.stages = "negatives,dpo"  # the negatives stage samples init (teach.teacher "" = init_checkpoint)
    c.stage.negatives = {"trainer": "teach"}
    c.stage.dpo = {"trainer": "dpo", "init_checkpoint": args.init, "dpo": {"negatives": "stage:negatives"}}
    return c
  c.trainer = "stages"
  c.stages = "sft,negatives,dpo"
  c.stage.sft = sft_stage
  c.stage.negatives = {"trainer": "teach"}  # its teacher: init_checkpoint, the sft stage
  c.stage.dpo = {"trainer": "dpo", "init_checkpoint": "stage:sft", "dpo": {"negatives": "stage:negatives"}}
  return c
