"""SFT steps on demonstrations between RL steps (docs/methods.md "ReLIFT" and "SASR-style SFT/RL switching").

config.rl.sft_steps picks one of two schedules; both take whole optimiser steps of the demonstration NLL (the "nll"
term on rr.data.SFTBatches rows of train questions) with the RL updates' optimiser state, so the learning-rate
schedule counts the SFT updates too.
- "relift" (arXiv 2506.07527): after each RL update the step's questions whose G rollouts all failed enter a
  buffer (a question already held is not added twice); once it holds rl.relift_buffer, one SFT step trains on the
  oldest rl.relift_buffer of them with NLL - rl.relift_entropy_coef * entropy, and they leave the buffer. The buffer
  is saved with each checkpoint, so a resumed run trains the same steps.
- "sasr" (arXiv 2505.13026, our reading of its gradient-norm signal): before sampling, each step measures g, the
  gradient norm of the SFT loss on rl.sft_batch_size demonstrations drawn for this step, and is an SFT step on them
  with probability g / (g + g0) (g0: the same measured at the run's first step, kept in the checkpoint), else an RL
  step. An SFT step samples nothing.
The GRPO step (rr.train.grpo.GRPOStep) calls `instead_of_rl` before sampling and `after_rl` after its update.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rr import sharding
from rr.config import ConfigError
from rr.data import SFTBatches
from rr.losses import masked_mean
from rr.registry import split_names
from rr.tasks import Example
from rr.train.batch import TrainBatch, put_batch, sft_batch
from rr.train.groups import Groups
from rr.train.loop import StepOutput
from rr.train.objectives import TERMS, Forward, Parts, Term, make_objective
from rr.train.precision import float32_norm
from rr.train.state import trainable, untrained
from rr.train.step import accumulated_grads, check_micro_batches, make_train_step

SASR_STREAM = 0x5A5  # seeds SASR's draws of step n as [seed, SASR_STREAM, n], apart from every other stream
FINITE = ("finite", "finite_terms")  # the loop's own device metrics (rr.train.loop.NOT_LOGGED), never prefixed
SFT_PREFIX = "sft_"  # the SFT update's device metrics are logged as train/sft_<name>, apart from the RL update's


# ------------------------------------------------------------------------------------------ the entropy term

@TERMS.register("demo_entropy")
def demo_entropy_term(config, parts: Parts) -> Term:
  """- rl.relift_entropy_coef * the policy's token entropy on the demonstration tokens (demo_mask), token mean like
  the nll term, so NLL + this is ReLIFT's SFT loss (docs/methods.md "ReLIFT")."""
  coef = config.rl.relift_entropy_coef

  def term(fwd: Forward):
    mask = fwd.batch.demo_mask.astype(jnp.float32)
    entropy = masked_mean(jnp.where(mask > 0, fwd.entropy, 0.0), mask)
    return -coef * entropy * fwd.share("demo", mask.sum()), {"demo_entropy": jax.lax.stop_gradient(entropy)}

  return term


# ------------------------------------------------------------------------------------------ the SFT update

def prefixed(sft_metrics: dict) -> dict:
  """An SFT update's device metrics as train/sft_<name> (its finite_terms too), with the loop's "finite"."""
  out = {SFT_PREFIX + k: v for k, v in sft_metrics.items() if k not in FINITE}
  out["finite"] = sft_metrics["finite"]
  out["finite_terms"] = {SFT_PREFIX + k: v for k, v in sft_metrics["finite_terms"].items()}
  return out


def merged(rl_metrics: dict, sft_metrics: dict) -> dict:
  """The RL update's metrics plus the SFT update's as sft_<name>; "finite" is true when both updates were."""
  sft = prefixed(sft_metrics)
  return {**rl_metrics, **{k: v for k, v in sft.items() if k not in FINITE},
          "finite": jnp.logical_and(rl_metrics["finite"], sft["finite"]),
          "finite_terms": {**rl_metrics["finite_terms"], **sft["finite_terms"]}}


class DemoUpdate:
  """One jitted SFT update (and SASR's gradient norm) on `rows` demonstration rows of train questions.

  Rows are SFTBatches.rows (always data.max_len wide), so with a fixed row count each function compiles once. The
  update is rr.train.step.make_train_step over the named terms: the state is donated, a non-finite update is
  skipped, and a LoRA state trains its adapters on the frozen base, as every trainer's step does.
  """

  def __init__(self, config, model, optimizer: optax.GradientTransformation, shardings: dict,
               mesh: jax.sharding.Mesh, tokenizer, examples: Sequence[Example], rows: int, names: list[str]):
    self.mesh, self.rows = mesh, rows
    self.batches = SFTBatches(examples, tokenizer, rows, config.data.max_len, config.seed)
    objective = make_objective(config, Parts(model, vocab_size=tokenizer.vocab_size), names)
    micro_batches = config.train.micro_batches
    self.update = make_train_step(objective, optimizer, shardings, mesh, seed=config.seed,
                                  micro_batches=micro_batches)
    grads_of = jax.value_and_grad(objective, has_aux=True)

    def grad_norm(state, batch):  # the update's gradient (same rng, same micro-batches), before any clipping
      rng = jax.random.fold_in(jax.random.key(config.seed), state["step"])
      if micro_batches == 1:
        _, grads = grads_of(trainable(state), batch, untrained(state), rng)
      else:
        grads = accumulated_grads(grads_of, objective, trainable(state), batch, untrained(state), rng,
                                  micro_batches, mesh)[2]
      return float32_norm(grads)

    self._grad_norm = jax.jit(grad_norm, in_shardings=(shardings, sharding.batch_sharding(mesh)),
                              out_shardings=sharding.replicated(mesh))

  def host_rows(self, indices: Sequence[int]) -> TrainBatch:
    """The demonstration rows of train questions `indices`, in that order, as a host batch."""
    if len(indices) != self.rows:
      raise ValueError(f"an SFT step trains {self.rows} rows, got {len(indices)} questions")
    return sft_batch(self.batches.rows([int(i) for i in indices]))

  def batch(self, indices: Sequence[int]) -> tuple[TrainBatch, float, float]:
    """(the rows on the mesh, the demonstration tokens they train, every real token they hold)."""
    rows = self.host_rows(indices)
    return put_batch(rows, self.mesh), float(rows.demo_mask.sum()), float((rows.positions >= 0).sum())

  def __call__(self, state, batch: TrainBatch) -> tuple[dict, dict]:
    return self.update(state, batch, {})

  def grad_norm(self, state, batch: TrainBatch) -> float:
    """The global norm of the SFT loss's gradient at the state's params; no update (the state is not donated)."""
    return float(self._grad_norm(state, batch))


# ------------------------------------------------------------------------------------------ ReLIFT

class ReLIFT:
  """ReLIFT's buffer of all-failed train questions (indices, oldest first) and its SFT step."""

  def __init__(self, update: DemoUpdate, examples: Sequence[Example], size: int):
    self.update, self.size = update, size
    self.index_of: dict[str, int] = {}
    for i, example in enumerate(examples):  # a question asked twice in the split trains its first demonstration
      self.index_of.setdefault(example.question, i)
    self.buffer: list[int] = []

  def add_failed(self, sampled: Groups) -> list[int]:
    """Buffers the questions of `sampled`'s all-failed groups that it does not hold yet; returns those added."""
    added, held = [], set(self.buffer)
    for g in np.flatnonzero(sampled.all_failed):
      question = sampled.examples[g * sampled.group_size].question
      if question not in self.index_of:
        raise ValueError(f"ReLIFT: sampled question {question[:60]!r} is not a train question")
      index = self.index_of[question]
      if index not in held:
        held.add(index)
        added.append(index)
    self.buffer.extend(added)
    return added

  def instead_of_rl(self, state, n: int) -> None:
    return None  # every ReLIFT step is an RL step; its SFT steps come after one

  def after_rl(self, state, n: int, rollouts, metrics: dict) -> tuple[dict, dict, dict]:
    """Buffers the step's all-failed questions; with rl.relift_buffer held, one SFT step on the oldest of them."""
    self.add_failed(rollouts.sampled)
    host = {"train/sft_step": 0.0, "train/sft_demo_tokens": 0.0}
    if len(self.buffer) >= self.size:
      taken, self.buffer = self.buffer[:self.size], self.buffer[self.size:]
      batch, demo_tokens, _ = self.update.batch(taken)
      state, sft_metrics = self.update(state, batch)
      metrics = merged(metrics, sft_metrics)
      host = {"train/sft_step": 1.0, "train/sft_demo_tokens": demo_tokens}
    host["train/relift_buffer"] = float(len(self.buffer))
    return state, metrics, host

  def state_dict(self) -> dict:
    return {"buffer": list(self.buffer)}

  def load_state_dict(self, state: dict) -> None:
    self.buffer = [int(i) for i in state.get("buffer", [])]


# ------------------------------------------------------------------------------------------ SASR

def sft_probability(grad_norm: float, first_grad_norm: float) -> float:
  """p = g / (g + g0): 1/2 while the SFT gradient is as large as at the start, towards 1 as the policy drifts from
  the demonstrations (g grows), towards 0 as it fits them. A non-finite g gives 0 (an RL step)."""
  total = grad_norm + first_grad_norm
  if not math.isfinite(total) or total <= 0:
    return 0.0
  return grad_norm / total


def sasr_draws(seed: int, step: int, num_examples: int, rows: int) -> tuple[np.ndarray, float]:
  """(step's `rows` demonstration indices, drawn without replacement; its uniform draw u, SFT when u < p): a pure
  function of (seed, step), so a resumed run, and every process, draws the same with no saved state."""
  rng = np.random.default_rng([seed, SASR_STREAM, step])
  indices = rng.choice(num_examples, size=rows, replace=False)
  return indices, float(rng.random())


class SASR:
  """SASR-style switching: each step an SFT step with probability g / (g + g0), else an RL step."""

  def __init__(self, update: DemoUpdate, num_examples: int, seed: int):
    self.update, self.num_examples, self.seed = update, num_examples, seed
    self.first_grad_norm: float | None = None  # g0, measured at the run's first step
    self.logged: dict = {}  # this step's p and g, for after_rl's host metrics on an RL step

  def instead_of_rl(self, state, n: int) -> StepOutput | None:
    """An SFT step's output (no rollouts sampled), or None: the step is an RL step."""
    indices, u = sasr_draws(self.seed, n, self.num_examples, self.update.rows)
    batch, demo_tokens, real_tokens = self.update.batch(indices)
    grad_norm = self.update.grad_norm(state, batch)
    if self.first_grad_norm is None and math.isfinite(grad_norm):
      self.first_grad_norm = grad_norm
    p = sft_probability(grad_norm, self.first_grad_norm if self.first_grad_norm is not None else 0.0)
    self.logged = {"train/sasr_p": p, "train/sasr_grad_norm": grad_norm}
    if u >= p:
      return None
    state, metrics = self.update(state, batch)
    return StepOutput(state, prefixed(metrics), {**self.logged, "train/sft_step": 1.0, "train/demo_tokens": demo_tokens,
                                                 "train/sft_demo_tokens": demo_tokens, "tokens_read": real_tokens})

  def after_rl(self, state, n: int, rollouts, metrics: dict) -> tuple[dict, dict, dict]:
    return state, metrics, {**self.logged, "train/sft_step": 0.0, "train/sft_demo_tokens": 0.0}

  def state_dict(self) -> dict:
    return {} if self.first_grad_norm is None else {"first_grad_norm": self.first_grad_norm}

  def load_state_dict(self, state: dict) -> None:
    if "first_grad_norm" in state:
      self.first_grad_norm = float(state["first_grad_norm"])


# ------------------------------------------------------------------------------------------ building them

def check_sft_steps(config, num_examples: int, mesh: jax.sharding.Mesh) -> None:
  """The config errors of rl.sft_steps, before anything is compiled (none when it is "none")."""
  rl = config.rl
  if rl.sft_steps == "none":
    return
  key = "relift_buffer" if rl.sft_steps == "relift" else "sft_batch_size"
  rows = rl[key]
  if rl.sft_steps == "relift" and "correctness" not in split_names(rl.rewards):
    raise ConfigError(f"config.rl.sft_steps='relift' buffers the questions the task verifier accepts no rollout of, "
                      f"but config.rl.rewards={rl.rewards!r} has no verifier, so every question would count as "
                      "failed; add 'correctness' to config.rl.rewards")
  if rows > num_examples:
    why = ("the buffer holds distinct questions, so it would never fill" if rl.sft_steps == "relift"
           else "each SFT step draws distinct questions")
    raise ConfigError(f"config.rl.{key}={rows} is more than the {num_examples} train questions: {why}; lower "
                      f"config.rl.{key} or raise config.data.train_size")
  shards = sharding.batch_shards(mesh)
  if rows % shards:
    raise ConfigError(f"config.rl.{key}={rows} rows of an SFT step do not split over the mesh's {shards} batch "
                      f"shards; make it a multiple of {shards}")
  check_micro_batches(config.train.micro_batches, rows, mesh, f"rl.{key}")


def make_sft_steps(config, model, optimizer, shardings, mesh, tokenizer, examples):
  """The GRPO step's SFT-steps part for config.rl.sft_steps (ReLIFT or SASR), or None for "none"."""
  rl = config.rl
  if rl.sft_steps == "none":
    return None
  check_sft_steps(config, len(examples), mesh)
  if rl.sft_steps == "relift":
    names = ["nll"] + (["demo_entropy"] if rl.relift_entropy_coef else [])
    update = DemoUpdate(config, model, optimizer, shardings, mesh, tokenizer, examples, rl.relift_buffer, names)
    return ReLIFT(update, examples, rl.relift_buffer)
  update = DemoUpdate(config, model, optimizer, shardings, mesh, tokenizer, examples, rl.sft_batch_size, ["nll"])
  return SASR(update, len(examples), config.seed)
