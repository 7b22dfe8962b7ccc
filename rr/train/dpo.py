"""Contrastive rationale distillation (`config.trainer = "dpo"`): DPO (2305.18290) on pairs of the teacher's
rationale (chosen) and the student's own wrong one (rejected) for one question, plus an NLL on the chosen, as in
QCRD (2405.13014) without its discriminator (docs/methods.md, "Contrastive rationale distillation").

Phases as rr.train.sft: inputs (the config's checks, the pairs of config.dpo.negatives with the train split's
demonstrations, rr.data.pairs), mesh, model and optimiser, restore, the frozen reference, then rr.train.loop.
Each batch holds train.batch_size / 2 pairs, pair i in rows 2i (chosen) and 2i+1 (rejected), both rows' completion
tokens in demo_mask; the "dpo" objective term reads that layout. The reference is config.dpo.reference, or the
run's starting params (config.init_checkpoint), rebuilt the same way on resume and never saved.
"""

from __future__ import annotations

import sys
import time
from typing import Callable

import jax
import jax.numpy as jnp

from rr.config import ConfigError
from rr.data.inputs import load_inputs
from rr.data.pairs import PairBatches, make_pairs, negatives_file
from rr.losses import completion_log_probs, dpo_loss
from rr.registry import split_names
from rr.sampler import Sampler
from rr.train import TRAINERS
from rr.train.batch import TrainBatch, put_batch, sft_batch
from rr.train.loop import StepOutput, Trainer, run_loop
from rr.train.objectives import TERMS, Forward, Parts, make_objective, term_names
from rr.train.setup import build_mesh, build_model_config, greedy_evaluation, open_student
from rr.train.state import lora_settings, starting_state
from rr.train.step import check_micro_batches, make_train_step

REFERENCE = "reference"  # the frozen model's name in the step's `frozen` dict


def chosen_mask(batch: TrainBatch) -> jax.Array:
  """The demonstration tokens of the chosen rows (the even ones) of a pair batch: what the NLL part trains on."""
  even = (jnp.arange(batch.tokens.shape[0]) % 2 == 0).astype(jnp.float32)
  return batch.demo_mask.astype(jnp.float32) * even[:, None]


@TERMS.register("dpo")
def dpo_term(config, parts: Parts):
  """DPO's loss over the batch's pairs (rr.losses.dpo_loss, beta = config.dpo.beta) on the sequence log-probs of
  the completions (sums over their demo_mask tokens, eos included) under the policy and the frozen "reference",
  plus config.dpo.nll_weight * the token-mean NLL of the chosen completions. Rows 2i / 2i+1 are pair i's chosen /
  rejected (rr.data.pairs.PairBatches); a micro-batch holds whole pairs (the trainer checks)."""
  beta, nll_weight = config.dpo.beta, config.dpo.nll_weight

  def term(fwd: Forward):
    batch = fwd.batch
    if batch.demo_mask is None or batch.tokens.shape[0] % 2:
      raise ValueError("objective term 'dpo' needs a batch of (chosen, rejected) row pairs with demo_mask: the dpo "
                       "trainer (config.trainer='dpo') builds them")
    mask = batch.demo_mask.astype(jnp.float32)
    policy = completion_log_probs(fwd.logp, mask)
    reference = completion_log_probs(fwd.frozen_logp(REFERENCE), mask)
    preference, metrics = dpo_loss(policy[0::2], policy[1::2], reference[0::2], reference[1::2], beta)
    chosen = chosen_mask(batch)
    count = chosen.sum()
    nll = -completion_log_probs(fwd.logp, chosen).sum() / jnp.maximum(count, 1.0)
    rows = jnp.float32(batch.tokens.shape[0])
    loss = preference * fwd.share("rows", rows) + nll_weight * nll * fwd.share("chosen", count)
    return loss, {**metrics, "dpo_loss": jax.lax.stop_gradient(preference), "chosen_nll": jax.lax.stop_gradient(nll),
                  "chosen_tokens": count}

  return term


def make_dpo_objective(config, parts: Parts, names: list[str]):
  """The objective of the named terms, whose micro-batches (train.micro_batches) also divide the NLL part by the
  whole batch's chosen tokens (Forward.share("chosen"))."""
  objective = make_objective(config, parts, names)
  core_totals = objective.totals
  objective.totals = lambda batch: {**core_totals(batch), "chosen": chosen_mask(batch).sum()}
  return objective


def check_config(config) -> list[str]:
  """Every check of a dpo config before any work: its settings, and that config.dpo.negatives is set and there;
  returns the objective's term names."""
  names = check_settings(config)
  negatives_file(config.dpo.negatives)
  return names


def check_settings(config) -> list[str]:
  """The checks that read no file (a job of stages can run them before its first stage, when the negatives are
  still to be sampled); returns the objective's term names."""
  d = config.dpo
  if not d.beta > 0:
    raise ConfigError(f"config.dpo.beta={d.beta} must be > 0: it scales the log-ratio margin (0.1 is DPO's usual)")
  if d.nll_weight < 0:
    raise ConfigError(f"config.dpo.nll_weight={d.nll_weight} must be >= 0 (0 = DPO alone)")
  if config.train.batch_size < 2 or config.train.batch_size % 2:
    raise ConfigError(f"config.train.batch_size={config.train.batch_size} must be even with trainer 'dpo': each "
                      "pair is two rows (its chosen and its rejected completion)")
  if config.data.packing or config.data.thought_dropout:
    raise ConfigError("trainer 'dpo' lays out one (chosen, rejected) pair per two rows; set config.data.packing="
                      "False and config.data.thought_dropout=0")
  if not (config.init_checkpoint or config.model.hf_path or d.reference):
    raise ConfigError("trainer 'dpo' refines a trained student against a frozen reference, but config."
                      "init_checkpoint, config.model.hf_path and config.dpo.reference are all empty (the run would "
                      "start from random params); set config.init_checkpoint to the student's SFT --workdir")
  names = split_names(config.train.loss_terms) or ["dpo"]
  if config.train.loss_terms:
    names = term_names(config, "dpo")
  if "dpo" not in names:
    raise ConfigError(f"config.train.loss_terms={config.train.loss_terms!r} has no 'dpo' term, which trainer 'dpo' "
                      "exists to train; add it (or set loss_terms='' for the default: dpo alone)")
  return names


def reference_model(config, student, model_cfg, mesh, vocab_size: int) -> tuple[dict, dict, dict]:
  """(frozen params, models, shardings) under "reference": config.dpo.reference (rr.train.frozen.load_frozen),
  or the run's starting params built as rr.train.grpo.reference_policy builds them (fresh buffers: the step
  donates the state)."""
  if config.dpo.reference:
    from rr.train.frozen import load_frozen

    ref = load_frozen(config.dpo.reference, mesh, vocab_size=vocab_size, dtype=config.model.param_dtype,
                      what="config.dpo.reference")
    return {REFERENCE: ref.params}, {REFERENCE: ref.model}, {REFERENCE: ref.shardings}
  params = starting_state(model_cfg, student.optimizer, mesh, config.seed, student.record, config.init_checkpoint,
                          hf_path=config.model.hf_path, lora=lora_settings(config))[0]["params"]
  return {REFERENCE: params}, {REFERENCE: student.model}, {REFERENCE: student.shardings["params"]}


def plain_split(config):
  """The train split before config.data.rationales_path swapped in a teacher's records (the questions a teach run
  of the student sampled), or None when it is not set."""
  if not config.data.rationales_path:
    return None
  plain = config.copy_and_resolve_references()
  plain.data.rationales_path = ""
  return load_inputs(plain).train


@TRAINERS.register("dpo")
def run(config, workdir: str, should_stop: Callable[[int], bool] | None = None) -> dict:
  """Trains, evaluates and writes reports into `workdir`; returns the summary, with the pair counts as total/*."""
  start = time.time()
  # ---------------------------------------------------------------- inputs
  names = check_config(config)
  inputs = load_inputs(config)
  tokenizer = inputs.tokenizer
  pairs = make_pairs(inputs.train, config.dpo.negatives, plain_split(config))
  batches = PairBatches(pairs.pairs, tokenizer, config.train.batch_size, config.data.max_len, config.seed)
  c = pairs.counts
  print(f"rr: {c['pairs']} (chosen, rejected) pairs from {pairs.path} for {c['questions_paired']} of "
        f"{c['questions']} train questions ({c['questions_without_negative']} without a negative; "
        f"{c['negatives_right']} records with a right answer dropped)", file=sys.stderr)
  eval_examples = inputs.test[:config.eval.num_examples]
  model_cfg = build_model_config(config, tokenizer.vocab_size)
  # ---------------------------------------------------------------- mesh
  mesh = build_mesh(config, config.train.batch_size)
  check_micro_batches(config.train.micro_batches, config.train.batch_size, mesh, "train.batch_size", group=2)
  # ---------------------------------------------------------------- model, optimiser, restore, reference
  total_steps = config.train.steps
  student = open_student(config, workdir, model_cfg, mesh, tokenizer.vocab_size, total_steps)
  frozen, frozen_models, frozen_shardings = reference_model(config, student, model_cfg, mesh, tokenizer.vocab_size)
  objective = make_dpo_objective(config, Parts(student.model, frozen_models, vocab_size=tokenizer.vocab_size), names)
  train_step = make_train_step(objective, student.optimizer, student.shardings, mesh, frozen_shardings,
                               seed=config.seed, micro_batches=config.train.micro_batches)
  # ---------------------------------------------------------------- train loop
  sampler = Sampler(model_cfg, eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id, mesh=mesh)

  def step(state, n: int) -> StepOutput:
    arrays = batches.batch(n)
    state, metrics = train_step(state, put_batch(sft_batch(arrays), mesh), frozen)
    return StepOutput(state, metrics, {"tokens_read": float((arrays["positions"] >= 0).sum())})

  trainer = Trainer("dpo", total_steps, step, greedy_evaluation(config, sampler, tokenizer, eval_examples),
                    learning_rate=lambda n: float(student.schedule(n - 1)), evaluate_first=True,
                    totals=lambda: {f"total/{k}": v for k, v in c.items()},
                    curves=("train/loss", "train/rewards/margins", "train/rewards/accuracies", "eval/accuracy"))
  return run_loop(trainer, student.state, workdir, config, student.checkpoints, student.record, student.resumed,
                  start, should_stop)
