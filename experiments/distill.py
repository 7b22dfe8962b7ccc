"""Distil a teacher into a student 7.5x smaller: the methods of issue 12 at one budget, three seeds each.

`python -m rr.experiment experiments/distill.py --dir /tmp/rr_distill` (`:runlocal` is the seconds-long variant the
test suite runs). The task is 3-digit addition (the embedded default). Program-written rationales exist for only 300
questions of an 8,000-question train split (today's stage 1); the other 7,700 have a gold answer and no rationale.

  teacher       the `tiny` preset (0.74M params) after SFT on the 300 program rationales (800 steps, lr 2e-3):
                configs/distil_then_reinforce.py's stage 1, seed 0. Trained once, shared by every method.
  teacher_data  4 rationales per train question from the teacher (T = 1), kept when the answer is right (the
                task's verifier) and not a duplicate: trainer "teach".
  teacher_sc    the same samples kept by self-consistency instead (the answer agrees with the majority of the 4;
                no gold answer read).

The student is the `micro` preset (0.10M params). Every method gets the same budget: 600 optimiser steps of 64
sequences (38,400 sequences of at most 48 tokens), from scratch unless it says otherwise:

  (a) sft_program   SFT on the 300 program rationales
  (b) sft_teacher   SFT on teacher_data; (b') sft_teacher_sc on teacher_sc
  (c) logit_kd      forward KL to the teacher's next-token distribution on teacher_data's sequences
  (d) on_policy_kd  GKD: each batch sampled from the student with probability 0.5, else teacher_data's sequences,
                    scored token by token by the teacher (forward KL)
  (e) self_distill  300 steps of (a), then 300 steps of privileged self-distillation (lr 3e-4): the student,
                    reading the gold answer before the question, is the teacher of its own samples
  (f) sft_then_grpo 300 steps of (b), then 300 GRPO steps (8 prompts x 8 completions: 64 sequences a step;
                    configs/distil_then_reinforce.py's RL recipe)
  (f') grpo_self_distill  (f) with privileged self-distillation added to GRPO's objective (weight 0.1, the gold
                    answer in the self-teacher's context)
  (e2), (f2), (f'2) the same as (e), (f), (f') from 500 steps of (b), for the last 100 steps: a later switch, once the
                    SFT student samples right answers (the same budget)
"""

import os
import runpy

from rr.config import parse_arg, read_json_or_none
from rr.experiment import (ACCURACY, STEP_ACCURACY, WALL_SECONDS, Column, Experiment, Method, PassAtK, Shared,
                           pass_at_k_column)

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIGS = os.path.join(os.path.dirname(HERE), "configs")
PROGRAM_RATIONALES = 300  # train questions with a program-written rationale (the first 300 of the split)
TRAIN_QUESTIONS = 8_000  # the train split: the teacher samples rationales for all of them
TOP_K = 16  # of the 104-token char vocabulary
LOGIT_CACHE = "teacher_logits_top16"


def sft_config(runlocal: bool):
  return runpy.run_path(os.path.join(CONFIGS, "sft.py"))["get_config"]("runlocal" if runlocal else None)


def get_experiment(arg=None):
  args = parse_arg(arg, runlocal=False)
  small = args.runlocal
  steps = 8 if small else 600
  half = steps // 2

  def student(seed: int, trainer: str = "sft"):
    c = sft_config(small)
    c.trainer = trainer
    c.seed = seed  # the init and the batch order; the questions are data.seed's, the teacher's
    c.data.seed = 0
    c.model.preset = "nano" if small else "micro"
    c.optim.lr = 2e-3
    c.train.steps = steps
    c.train.eval_every = 0 if small else 100
    c.train.checkpoint_every = steps
    c.train.log_every = 2 if small else 20
    return c

  def teacher(paths):
    c = sft_config(small)
    c.data.seed = 0
    c.model.preset = "nano" if small else "tiny"
    c.data.train_size = 32 if small else PROGRAM_RATIONALES
    c.optim.lr = 2e-3
    c.train.steps = 8 if small else 800
    c.train.eval_every = 0 if small else 200
    return c

  def teacher_data(filters: str):
    def config(paths):
      c = sft_config(small)
      c.data.seed = 0
      c.trainer = "teach"
      c.teach.teacher = paths["teacher"]
      c.teach.samples = 2 if small else 4
      c.teach.filters = "dedup" if small else filters  # an 8-step teacher gets nothing right
      c.teach.max_new_tokens = 40  # with the 8-token prompt, within data.max_len = 48
      c.teach.questions_per_chunk = 8 if small else 512
      c.data.train_size = 16 if small else TRAIN_QUESTIONS
      return c
    return config

  def on_program(c):
    c.data.train_size = 32 if small else PROGRAM_RATIONALES
    return c

  def on_teacher_data(c, paths, name="teacher_data"):
    c.data.train_size = 16 if small else TRAIN_QUESTIONS
    c.data.rationales_path = paths[name]
    return c

  def sft_program(seed, paths):
    return on_program(student(seed))

  def sft_teacher(seed, paths):
    return on_teacher_data(student(seed), paths)

  def sft_teacher_sc(seed, paths):
    return on_teacher_data(student(seed), paths, "teacher_sc")

  def logit_kd(seed, paths):
    c = on_teacher_data(student(seed), paths)
    c.train.loss_terms = "kd"
    c.distill.teacher = paths["teacher"]
    c.distill.top_k = TOP_K  # the teacher runs once, into a cache every seed reads
    c.distill.logit_cache = os.path.join(paths["teacher_data"], LOGIT_CACHE)
    return c

  def on_policy_kd(seed, paths):
    c = on_teacher_data(student(seed, "gkd"), paths)
    c.distill.teacher = paths["teacher"]
    c.distill.on_policy = 0.5
    c.distill.max_new_tokens = 40
    return c

  def then(first, second_trainer: str, overrides: dict, first_steps: int = half):
    """A stages job: `first` for `first_steps`, then `second_trainer` from its checkpoint for the rest."""
    c = first
    c.trainer = "stages"
    c.stages = "first,second"
    rest = steps - first_steps
    c.stage.first = {"trainer": "sft", "train": {"steps": first_steps, "checkpoint_every": first_steps}}
    c.stage.second = {"trainer": second_trainer, "train": {"steps": rest, "checkpoint_every": rest}, **overrides}
    return c

  def self_distill(seed, paths):
    return then(on_program(student(seed)), "gkd", {
        "data": {"train_size": 16 if small else TRAIN_QUESTIONS},
        "optim": {"lr": 3e-4, "warmup_steps": 2 if small else 20},
        "distill": {"teacher": "self", "privileged_context": "answer", "on_policy": 1.0, "max_new_tokens": 40}})

  def sft_then_grpo(seed, paths, first_steps=half):
    c = on_teacher_data(student(seed), paths)
    warmup = 5 if small else min(50, (steps - first_steps) // 2)
    return then(c, "grpo", {"data": {"rationales_path": ""},
                            "optim": {"lr": 5e-5, "warmup_steps": warmup, "weight_decay": 0.0},
                            # configs/distil_then_reinforce.py's RL recipe: DAPO's clip-higher, token mean, dynamic sampling
                            "rl": {"eps_high": 0.28, "aggregation": "token-mean", "dynamic_sampling": not small}},
                first_steps)

  def grpo_self_distill(seed, paths, first_steps=half):
    c = sft_then_grpo(seed, paths, first_steps)
    c.stage.second.train.loss_terms = "policy,privileged_kd"
    c.stage.second.distill = {"privileged_context": "answer", "weight": 0.1}
    return c

  late = 4 if small else 500  # the later switch: the SFT student samples right answers by then

  def teacher_sft_then_self_distill(seed, paths):
    return then(on_teacher_data(student(seed), paths), "gkd", {
        "optim": {"lr": 3e-4, "warmup_steps": 2 if small else 20},
        "distill": {"teacher": "self", "privileged_context": "answer", "on_policy": 1.0, "max_new_tokens": 40}}, late)

  def teacher_tokens(summary, run_dir):
    """What the teacher wrote or read for a run, from its config: the tokens it sampled for the data the run
    trains on (data.rationales_path), plus the positions it scored: a logit cache's rows once (shared by every
    seed), or every step's rows when it runs in the step (kd, on-policy KD). Self-distillation reads no teacher."""
    config = read_json_or_none(os.path.join(run_dir, "config.json")) or {}
    data, distill = config.get("data", {}), config.get("distill", {})
    path = data.get("rationales_path", "")
    sampled = (read_json_or_none(os.path.join(path, "summary.json")) or {}).get("teacher_tokens", 0) if path else 0
    scores = "kd" in config.get("train", {}).get("loss_terms", "").split(",") or (
        config.get("trainer") == "gkd" and distill.get("teacher") != "self")
    if not scores:
      return sampled
    if distill.get("logit_cache"):
      meta = read_json_or_none(os.path.join(distill["logit_cache"], "meta.json")) or {}
      return sampled + meta.get("num_rows", 0) * meta.get("max_len", 0)
    return sampled + config["train"]["steps"] * config["train"]["batch_size"] * data["max_len"]

  methods = [
      Method("sft_program", sft_program, "(a) SFT, 300 program rationales"),
      Method("sft_teacher", sft_teacher, "(b) SFT, teacher rationales (verifier)"),
      Method("sft_teacher_sc", sft_teacher_sc, "(b') SFT, teacher rationales (self-consistency)"),
      Method("logit_kd", logit_kd, "(c) logit KD on teacher sequences"),
      Method("on_policy_kd", on_policy_kd, "(d) on-policy KD (lambda 0.5)"),
      Method("self_distill", self_distill, "(e) (a), then privileged self-distillation"),
      Method("sft_then_grpo", sft_then_grpo, "(f) (b), then GRPO"),
      Method("grpo_self_distill", grpo_self_distill, "(f') (b), then GRPO + privileged self-distillation"),
  ]
  if not small:  # the later switch runs the same code paths as (e), (f) and (f'): runlocal skips it
    methods += [
        Method("teacher_sft_then_self_distill", teacher_sft_then_self_distill,
               "(e2) (b) 500 steps, then privileged self-distillation 100"),
        Method("sft_then_grpo_late", lambda seed, paths: sft_then_grpo(seed, paths, late),
               "(f2) (b) 500 steps, then GRPO 100"),
        Method("grpo_self_distill_late", lambda seed, paths: grpo_self_distill(seed, paths, late),
               "(f'2) (b) 500 steps, then GRPO + privileged self-distillation 100"),
    ]
  return Experiment(
      name="distill_runlocal" if small else "distill",
      methods=methods,
      shared=[Shared("teacher", teacher), Shared("teacher_data", teacher_data("correct,dedup")),
              Shared("teacher_sc", teacher_data("consistent,dedup"))],
      columns=[ACCURACY, STEP_ACCURACY, pass_at_k_column(8), Column("teacher tokens", teacher_tokens, 0),
               WALL_SECONDS],
      pass_at_k=PassAtK(ks=(1, 8), num_examples=16 if small else 200),
  )
