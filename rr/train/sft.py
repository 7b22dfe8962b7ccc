"""SFT on rationales (`config.trainer = "sft"`): the NLL of the demonstration tokens through the one loop.

Phases: inputs (every check of user input, before anything is compiled or written), mesh, model and optimiser,
checkpoint restore, then rr.train.loop. The objective is `config.train.loss_terms` ("" = nll). The rows follow
the terms (docs/methods.md): with step_by_step each example is a predict row and an explain row, and the
periodic evaluation asks with the predict prefix; with kd and config.distill.logit_cache each batch carries its
rows' cached top-k teacher logits (rr.train.logit_cache) and no teacher runs in the step. data.thought_dropout
drops rationales from the rows (TON).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable

import jax
import optax

from rr import models
from rr.config import ConfigError
from rr.data import SFTBatches
from rr.data.sft_batches import PREDICT_PREFIX
from rr.data.inputs import load_inputs
from rr.sampler import Sampler
from rr.train import TRAINERS, logit_cache
from rr.train.batch import put_batch, sft_batch
from rr.train.loop import StepOutput, Trainer, run_loop
from rr.train.objectives import Parts, make_objective, term_names
from rr.train.privileged import policy_question
from rr.train.setup import build_mesh, build_model_config, greedy_evaluation, open_student
from rr.train.step import check_micro_batches, make_train_step


def make_sft_step(model: models.Decoder, optimizer: optax.GradientTransformation, shardings: dict,
                  mesh: jax.sharding.Mesh, config=None, names: tuple[str, ...] = ("nll",), frozen_models=None,
                  frozen_shardings=None, vocab_size: int | None = None) -> Callable:
  """`step(state, batch, frozen) -> (state, metrics)` of the named terms (default: the NLL) on a TrainBatch;
  `frozen_models` / `frozen_shardings` by name for terms that read a frozen model (kd reads "teacher")."""
  objective = make_objective(config, Parts(model, frozen_models or {}, vocab_size=vocab_size), list(names))
  return make_train_step(objective, optimizer, shardings, mesh, frozen_shardings,
                         seed=0 if config is None else config.seed,
                         micro_batches=1 if config is None else config.train.micro_batches)


def teacher_model(config, names: list[str], mesh, vocab_size: int) -> tuple[dict, dict, dict]:
  """(frozen params, models, shardings) by name: {"teacher": ...} when a term distils from one, else {}."""
  if "kd" not in names:
    return {}, {}, {}
  from rr.train.privileged import check_teacher

  check_teacher(config, names)  # "self" is no frozen model
  if not config.distill.teacher:
    raise ConfigError("config.train.loss_terms has 'kd', which distils from a teacher, but config.distill.teacher "
                      "is empty; point it at an rr run's --workdir or a Hugging Face model directory")
  from rr.train.frozen import load_frozen

  teacher = load_frozen(config.distill.teacher, mesh, vocab_size=vocab_size, dtype=config.distill.teacher_dtype,
                        what="config.distill.teacher")
  return {"teacher": teacher.params}, {"teacher": teacher.model}, {"teacher": teacher.shardings}


def _check_rows(config, names: list[str]) -> None:
  """The row options the terms cannot take together, refused before any work."""
  if config.data.packing:
    if "step_by_step" in names:
      raise ConfigError("config.data.packing packs plain SFT rows, but the step_by_step term (config.train.loss_terms) "
                        "lays each example out as a predict row and an explain row; set config.data.packing=False")
    if config.data.thought_dropout:
      raise ConfigError("config.data.packing packs the rows once, before training, but config.data.thought_dropout "
                        "draws each step's rows afresh; set one of them only")
    if "kd" in names and config.distill.logit_cache:
      raise ConfigError("config.distill.logit_cache holds the teacher's logits on one example per row, but "
                        "config.data.packing puts several in a row; clear config.distill.logit_cache (the teacher "
                        "then runs in the step, on the packed rows) or set config.data.packing=False")
  if "step_by_step" in names:
    if config.train.batch_size % 2:
      raise ConfigError(f"config.train.batch_size={config.train.batch_size} must be even with the step_by_step "
                        "term: each example is two rows (its predict and its explain task)")
    if config.data.thought_dropout:
      raise ConfigError("config.data.thought_dropout applies to rationale SFT rows; the step_by_step term trains "
                        "the rationale as a task of its own, so set one of them only")
  if "kd" in names and config.distill.logit_cache:
    if config.distill.top_k <= 0:
      raise ConfigError("config.distill.logit_cache caches the teacher's top-k logits: set config.distill.top_k > 0 "
                        "(e.g. 32)")
    if config.data.thought_dropout or "step_by_step" in names:
      raise ConfigError("config.distill.logit_cache holds the teacher's logits on the plain SFT rows, but "
                        "config.data.thought_dropout / the step_by_step term train other rows; clear "
                        "config.distill.logit_cache to run the teacher in the step")


def _prepare_logit_cache(config, names: list[str], batches: SFTBatches, vocab_size: int) -> tuple[dict, bool]:
  """(the metadata the run's cache must have, whether it is built already); ({}, False) when the run uses none.
  A mismatching cache, or a missing one without a teacher to build it, is a ConfigError here."""
  path = config.distill.logit_cache
  if "kd" not in names or not path:
    return {}, False
  want = logit_cache.metadata(config, batches, vocab_size)
  built = logit_cache.is_built(path, want)
  if not built and not config.distill.teacher:
    raise ConfigError(f"config.distill.logit_cache={path!r} does not exist yet and config.distill.teacher is empty; "
                      "set config.distill.teacher to an rr run's --workdir or a Hugging Face model directory to "
                      "build it")
  if not built and jax.process_count() > 1:
    raise ConfigError(f"config.distill.logit_cache={path!r} does not exist yet; build it with a single-process run "
                      "(the same config on one host, train.steps=1), then start this one")
  return want, built


@TRAINERS.register("sft")
def run(config, workdir: str, should_stop: Callable[[int], bool] | None = None) -> dict:
  """Trains, evaluates and writes reports into `workdir`; returns the summary.

  `should_stop(step)` lets a caller end the run after a step as Ctrl-C would (a checkpoint is saved).
  """
  start = time.time()
  # ---------------------------------------------------------------- inputs
  inputs = load_inputs(config)
  tokenizer = inputs.tokenizer
  names = term_names(config, "sft")
  _check_rows(config, names)
  step_by_step = "step_by_step" in names
  # data.prompt_context: the model learns to read the gold answer or solution first (an RLT teacher's warm-up)
  train, test = ([dataclasses.replace(e, question=policy_question(e, config.data.prompt_context)) for e in split]
                 for split in (inputs.train, inputs.test))
  batches = SFTBatches(train, tokenizer, config.train.batch_size, config.data.max_len, config.seed,
                       thought_dropout=config.data.thought_dropout, step_by_step=step_by_step,
                       packing=config.data.packing)
  cache_meta, cache_built = _prepare_logit_cache(config, names, batches, tokenizer.vocab_size)
  eval_examples = test[:config.eval.num_examples]
  if step_by_step:  # the student answers the predict task; its explain task is not asked at test time
    eval_examples = [dataclasses.replace(e, question=PREDICT_PREFIX + e.question) for e in eval_examples]
  model_cfg = build_model_config(config, tokenizer.vocab_size)
  # ---------------------------------------------------------------- mesh
  mesh = build_mesh(config, config.train.batch_size)
  check_micro_batches(config.train.micro_batches, config.train.batch_size, mesh, "train.batch_size")
  cache = None
  if cache_meta:  # the teacher runs once, over every row, into the cache; the steps read the cache
    if not cache_built:
      teacher, teacher_models, _ = teacher_model(config, names, mesh, tokenizer.vocab_size)
      logit_cache.build(config.distill.logit_cache, cache_meta, teacher_models["teacher"], teacher["teacher"],
                        batches, mesh, config.train.batch_size)
      del teacher, teacher_models  # the steps never read it
    cache = logit_cache.load(config.distill.logit_cache, cache_meta)
    frozen, frozen_models, frozen_shardings = {}, {}, {}
  else:
    frozen, frozen_models, frozen_shardings = teacher_model(config, names, mesh, tokenizer.vocab_size)  # kd's
  # ---------------------------------------------------------------- model, optimiser, checkpoint restore
  total_steps = config.train.steps
  student = open_student(config, workdir, model_cfg, mesh, tokenizer.vocab_size, total_steps)
  # ---------------------------------------------------------------- train loop
  sampler = Sampler(model_cfg, eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id, mesh=mesh)
  train_step = make_sft_step(student.model, student.optimizer, student.shardings, mesh, config, tuple(names),
                             frozen_models, frozen_shardings, tokenizer.vocab_size)

  def step(state, n: int) -> StepOutput:
    arrays = batches.batch(n)
    width = arrays["tokens"].shape[1]  # the batch's bucket; the cache holds max_len columns
    extra = ({k: v[:, :width] for k, v in cache.rows(batches.example_indices(n)).items()} if cache is not None
             else {})
    if step_by_step:
      extra["rationale_mask"] = arrays["rationale_mask"]
    state, metrics = train_step(state, put_batch(sft_batch(arrays).replace(**extra), mesh), frozen)
    return StepOutput(state, metrics, {"tokens_read": float((arrays["positions"] >= 0).sum())})

  trainer = Trainer("sft", total_steps, step, greedy_evaluation(config, sampler, tokenizer, eval_examples),
                    learning_rate=lambda n: float(student.schedule(n - 1)))
  return run_loop(trainer, student.state, workdir, config, student.checkpoints, student.record, student.resumed,
                  start, should_stop)
