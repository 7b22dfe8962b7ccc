"""SFT on rationales (`config.trainer = "sft"`): the NLL of the demonstration tokens through the one loop.

Phases: inputs (every check of user input, before anything is compiled or written), mesh, model and optimiser,
checkpoint restore, then rr.train.loop. The objective is `config.train.loss_terms` ("" = nll).
"""

from __future__ import annotations

import time
from typing import Callable

import jax
import optax

from rr import models
from rr.config import ConfigError, save_run_config
from rr.data import SFTBatches
from rr.data.inputs import load_inputs
from rr.eval import evaluate_accuracy
from rr.sampler import Sampler
from rr.train import TRAINERS
from rr.train.batch import put_batch, sft_batch
from rr.train.loop import StepOutput, Trainer, run_loop
from rr.train.objectives import Parts, make_objective, term_names
from rr.train.optimizer import learning_rate_schedule, make_optimizer
from rr.train.setup import build_mesh, build_model_config
from rr.train.state import open_run
from rr.train.step import make_train_step


def make_sft_step(model: models.Decoder, optimizer: optax.GradientTransformation, shardings: dict,
                  mesh: jax.sharding.Mesh, config=None, names: tuple[str, ...] = ("nll",), frozen_models=None,
                  frozen_shardings=None, vocab_size: int | None = None) -> Callable:
  """`step(state, batch, frozen) -> (state, metrics)` of the named terms (default: the NLL) on a TrainBatch;
  `frozen_models` / `frozen_shardings` by name for terms that read a frozen model (kd reads "teacher")."""
  objective = make_objective(config, Parts(model, frozen_models or {}, vocab_size=vocab_size), list(names))
  return make_train_step(objective, optimizer, shardings, mesh, frozen_shardings,
                         seed=0 if config is None else config.seed)


def teacher_model(config, names: list[str], mesh, vocab_size: int) -> tuple[dict, dict, dict]:
  """(frozen params, models, shardings) by name: {"teacher": ...} when a term distils from one, else {}."""
  if "kd" not in names:
    return {}, {}, {}
  if not config.distill.teacher:
    raise ConfigError("config.train.loss_terms has 'kd', which distils from a teacher, but config.distill.teacher "
                      "is empty; point it at an rr run's --workdir or a Hugging Face model directory")
  from rr.train.frozen import load_frozen

  teacher = load_frozen(config.distill.teacher, mesh, vocab_size=vocab_size, dtype=config.distill.teacher_dtype,
                        what="config.distill.teacher")
  return {"teacher": teacher.params}, {"teacher": teacher.model}, {"teacher": teacher.shardings}


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
  batches = SFTBatches(inputs.train, tokenizer, config.train.batch_size, config.data.max_len, config.seed)
  eval_examples = inputs.test[:config.eval.num_examples]
  model_cfg = build_model_config(config, tokenizer.vocab_size)
  # ---------------------------------------------------------------- mesh
  mesh = build_mesh(config, config.train.batch_size)
  frozen, frozen_models, frozen_shardings = teacher_model(config, names, mesh, tokenizer.vocab_size)  # kd's teacher
  # ---------------------------------------------------------------- model and optimiser
  model = models.Decoder(model_cfg)
  total_steps = config.train.steps
  optimizer = make_optimizer(config.optim, total_steps, model_cfg.param_dtype)
  schedule = learning_rate_schedule(config.optim, total_steps)
  # ---------------------------------------------------------------- checkpoint restore
  checkpoints, record, state, shardings, resumed = open_run(workdir, config, model_cfg, optimizer, mesh,
                                                           tokenizer.vocab_size)
  if jax.process_index() == 0:
    save_run_config(config, workdir)
  # ---------------------------------------------------------------- train loop
  sampler = Sampler(model_cfg, eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id, mesh=mesh)
  train_step = make_sft_step(model, optimizer, shardings, mesh, config, tuple(names), frozen_models,
                             frozen_shardings, tokenizer.vocab_size)

  def step(state, n: int) -> StepOutput:
    arrays = batches.batch(n)
    state, metrics = train_step(state, put_batch(sft_batch(arrays), mesh), frozen)
    return StepOutput(state, metrics, {"tokens_read": float((arrays["positions"] >= 0).sum())})

  def evaluate(params) -> dict:
    if not eval_examples:
      return {}
    t = time.time()
    metrics = evaluate_accuracy(sampler, params, tokenizer, eval_examples,
                                max_new_tokens=config.eval.max_new_tokens, batch_size=config.eval.batch_size)
    return {**metrics, "eval/seconds": time.time() - t}

  trainer = Trainer("sft", total_steps, step, evaluate, learning_rate=lambda n: float(schedule(n - 1)))
  return run_loop(trainer, state, workdir, config, checkpoints, record, resumed, start, should_stop)
