"""On-policy distillation (GKD, 2306.13649) of the tiny student on 3-digit addition from a teacher run.

`python -m rr.main --config configs/gkd.py:teacher=/tmp/teacher --workdir /tmp/gkd`: the teacher is an rr run's
--workdir (or a Hugging Face directory) of any size with the char tokenizer. Each step's batch is, with
probability distill.on_policy = 0.5, the student's own samples, else the program's rationales, and the student
matches the teacher's next-token distributions on it (generalised JSD, beta = 0.5: TRL's GKDTrainer defaults).
`:teacher=DIR,self` is privileged self-distillation instead: the student starts from DIR (a run of its own
preset, e.g. configs/sft.py's) and is its own teacher, reading the gold solution before the question, on its own
samples only (on_policy = 1). `:runlocal` shrinks either to seconds.
"""

import os
import runpy

from rr.config import parse_arg, shrink_for_runlocal


def get_config(arg=None):
  args = parse_arg(arg, teacher="", self=False, runlocal=False)
  here = os.path.dirname(os.path.abspath(__file__))
  c = runpy.run_path(os.path.join(here, "sft.py"))["get_config"]()  # the task, student and schedule of SFT
  c.trainer = "gkd"
  c.distill.teacher = args.teacher
  c.distill.divergence = "jsd"
  c.distill.beta = 0.5
  c.distill.on_policy = 0.5
  c.distill.max_new_tokens = 40  # the longest 3-digit completion is 33 tokens with eos
  c.distill.sample_temperature = 1.0
  if args.self:
    c.init_checkpoint = args.teacher
    c.distill.teacher = "self"
    c.distill.privileged_context = "solution"
    c.distill.on_policy = 1.0
    c.optim.lr = 1e-4  # fine-tuning a trained student, not training one
    c.optim.warmup_steps = 10
    c.train.steps = 200
    c.train.eval_every = 50
    c.train.checkpoint_every = 50
  if args.runlocal:
    shrink_for_runlocal(c)
  return c
