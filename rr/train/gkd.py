"""On-policy distillation (`config.trainer = "gkd"`; GKD, 2306.13649): the student trains on its own samples,
scored token by token by a teacher, with probability distill.on_policy (lambda), else on the data's completions.

Each loop step n reads the examples rr.data.SFTBatches gives step n. A draw that depends on (seed, n) only decides
whether the student completes their prompts (rr.sampler.Sampler at distill.sample_temperature, up to
distill.max_new_tokens, key from (seed, n); the samples are token ids, so no gradient flows through sampling) or
the batch keeps the fixed completions (format_completion + eos). Both are laid out as rollout rows
(rr.train.batch.rollout_batch): the prompt left-padded to P columns, the completion from column P on, right-padded
to C = distill.max_new_tokens, policy_mask on its targets; one compiled step serves both. lambda = 0 is
supervised KD on the fixed sequences. The objective is "kd" to the frozen config.distill.teacher, or
"privileged_kd" (rr.train.privileged) when the teacher is "self"; config.train.loss_terms overrides either.
Phases as rr.train.sft: inputs, mesh, model and optimiser, restore, then rr.train.loop.
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

import jax
import numpy as np

from rr.config import ConfigError
from rr.data import SFTBatches, encode_prompts, format_completion
from rr.data.inputs import load_inputs
from rr.registry import split_names
from rr.sampler import Sampler, Sampling
from rr.train import TRAINERS
from rr.train.batch import TrainBatch, put_batch, rollout_batch
from rr.train.loop import StepOutput, Trainer, run_loop
from rr.train.objectives import Parts, make_objective, term_names
from rr.train.privileged import SELF_TEACHER, PrivilegedRows, check_teacher
from rr.train.setup import build_mesh, build_model_config, greedy_evaluation, open_student
from rr.train.sft import teacher_model
from rr.train.state import policy_params
from rr.train.step import check_micro_batches, make_train_step

_LAMBDA_STREAM = 2  # [seed, step, 2]: apart from SFTBatches' [seed, epoch] permutations and [seed, step, 1] dropout


def on_policy_step(seed: int, step: int, rate: float) -> bool:
  """Whether loop step `step` trains on the student's samples: true with probability `rate`, decided by
  (seed, step) alone, so a resumed run makes the same choices."""
  return bool(np.random.default_rng([seed, step, _LAMBDA_STREAM]).random() < rate)


def gkd_term_names(config) -> list[str]:
  """config.train.loss_terms, or "kd" to the frozen teacher ("privileged_kd" when distill.teacher is "self")."""
  if split_names(config.train.loss_terms):
    return term_names(config, "gkd")
  return ["privileged_kd"] if config.distill.teacher == SELF_TEACHER else ["kd"]


def check_config(config, names: list[str]) -> None:
  """The settings trainer gkd cannot honour, refused before any work."""
  check_teacher(config, names)
  if "kd" in names and not config.distill.teacher:
    raise ConfigError("trainer 'gkd' distils from config.distill.teacher, which is empty: point it at an rr run's "
                      "--workdir or a Hugging Face model directory (configs/gkd.py:teacher=DIR), or set it to 'self' "
                      "for privileged self-distillation")
  if config.distill.logit_cache:
    raise ConfigError("config.distill.logit_cache caches a teacher's logits on fixed SFT rows; trainer 'gkd' scores "
                      "the student's fresh samples in the step, so clear config.distill.logit_cache")
  if config.data.thought_dropout:
    raise ConfigError("config.data.thought_dropout drops rationales from SFT rows; trainer 'gkd' trains on the "
                      "data's whole completions and the student's samples, so set it to 0")
  if config.data.packing:
    raise ConfigError("config.data.packing packs several SFT examples into a row; trainer 'gkd' lays out one prompt "
                      "and one completion (sampled or fixed) per row, so set config.data.packing=False")


class GKDBatches:
  """`batch(n, sampler, params) -> (TrainBatch, on_policy)`: loop step n's rows, sampled or fixed, in one layout.

  Every check of the data (a fixed completion wider than C) runs here, before any work. `privileged` adds the
  self-teacher's rows when the objective has "privileged_kd".
  """

  def __init__(self, config, tokenizer, examples: Sequence, privileged: PrivilegedRows | None = None):
    d = config.distill
    self.tokenizer, self.examples, self.privileged, self.seed = tokenizer, list(examples), privileged, config.seed
    self.rate, self.completion_width = d.on_policy, d.max_new_tokens
    self.strategy = Sampling(temperature=d.sample_temperature)
    self.prompts = encode_prompts(tokenizer, [e.question for e in self.examples])
    self.completions = [tokenizer.encode(format_completion(e)) + [tokenizer.eos_id] for e in self.examples]
    lengths = [len(c) for c in self.completions]
    longest = int(np.argmax(lengths))
    if lengths[longest] > self.completion_width:
      raise ConfigError(f"example {longest} (question {self.examples[longest].question[:60]!r}) has a completion of "
                        f"{lengths[longest]} tokens with eos, more than config.distill.max_new_tokens="
                        f"{self.completion_width}, the completion width of every gkd row (sampled or fixed); raise "
                        f"config.distill.max_new_tokens to at least {lengths[longest]}")
    self.prompt_width = -(-max(len(p) for p in self.prompts) // 8) * 8
    self.width = self.prompt_width + self.completion_width
    # Only its order of examples is used: the rows are laid out here, so its max_len is this batch width.
    self.order = SFTBatches(self.examples, tokenizer, config.train.batch_size, self.width, config.seed)

  def batch(self, n: int, sampler: Sampler, params) -> tuple[TrainBatch, bool]:
    picked = self.order.example_indices(n)
    prompts = [self.prompts[i] for i in picked]
    on_policy = on_policy_step(self.seed, n, self.rate)
    if on_policy:
      key = jax.random.fold_in(jax.random.key(self.seed), n)
      out = sampler(params, prompts, max_new_tokens=self.completion_width, strategy=self.strategy, rng=key)
      tokens_NxC, lengths_N = out.tokens, out.lengths
    else:
      tokens_NxC, lengths_N = self.fixed(picked)
    rows = rollout_batch(prompts, 1, tokens_NxC, lengths_N, np.zeros(tokens_NxC.shape, np.float32),
                         self.tokenizer.eos_id, self.tokenizer.pad_id, self.width)
    batch = TrainBatch(tokens=rows.tokens, positions=rows.positions, policy_mask=rows.policy_mask)
    if self.privileged is not None:
      batch = self.privileged.add_to(batch, [self.examples[i] for i in picked], tokens_NxC, lengths_N)
    return batch, on_policy

  def fixed(self, picked: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(tokens [N, C] right-padded, lengths [N]) of the data's completions of examples `picked`."""
    tokens_NxC = np.full((len(picked), self.completion_width), self.tokenizer.pad_id, np.int32)
    lengths_N = np.zeros((len(picked),), np.int32)
    for row, i in enumerate(picked):
      completion = self.completions[i]
      tokens_NxC[row, :len(completion)] = completion
      lengths_N[row] = len(completion)
    return tokens_NxC, lengths_N


@TRAINERS.register("gkd")
def run(config, workdir: str, should_stop: Callable[[int], bool] | None = None) -> dict:
  """Distils the teacher into the student on and off its own samples, writes reports into `workdir`; returns the
  summary. `should_stop(step)` ends the run after a step as Ctrl-C would (a checkpoint is saved)."""
  start = time.time()
  d = config.distill
  # ---------------------------------------------------------------- inputs
  inputs = load_inputs(config)
  tokenizer = inputs.tokenizer
  names = gkd_term_names(config)
  check_config(config, names)
  privileged = (PrivilegedRows(tokenizer, inputs.train, d.privileged_context, d.max_new_tokens)
                if "privileged_kd" in names else None)
  batches = GKDBatches(config, tokenizer, inputs.train, privileged)
  eval_examples = inputs.test[:config.eval.num_examples]
  model_cfg = build_model_config(config, tokenizer.vocab_size)
  # ---------------------------------------------------------------- mesh
  mesh = build_mesh(config, config.train.batch_size)
  check_micro_batches(config.train.micro_batches, config.train.batch_size, mesh, "train.batch_size")
  frozen, frozen_models, frozen_shardings = teacher_model(config, names, mesh, tokenizer.vocab_size)
  # ---------------------------------------------------------------- model, optimiser, checkpoint restore
  total_steps = config.train.steps
  student = open_student(config, workdir, model_cfg, mesh, tokenizer.vocab_size, total_steps)
  # ---------------------------------------------------------------- train loop
  sampler = Sampler(model_cfg, eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id, mesh=mesh)
  parts = Parts(student.model, frozen_models, vocab_size=tokenizer.vocab_size, completion_width=d.max_new_tokens)
  train_step = make_train_step(make_objective(config, parts, names), student.optimizer, student.shardings, mesh,
                               frozen_shardings, seed=config.seed, micro_batches=config.train.micro_batches)

  def step(state, n: int) -> StepOutput:
    batch, on_policy = batches.batch(n, sampler, policy_params(state))
    read = (batch.positions >= 0).sum() + (0 if privileged is None else (batch.privileged_positions >= 0).sum())
    host = {"train/on_policy": float(on_policy), "tokens_read": float(read),
            "train/completions/mean_length": float(batch.policy_mask.sum(axis=1).mean())}
    state, metrics = train_step(state, put_batch(batch, mesh), frozen)
    return StepOutput(state, metrics, host)

  trainer = Trainer("gkd", total_steps, step, greedy_evaluation(config, sampler, tokenizer, eval_examples),
                    learning_rate=lambda n: float(student.schedule(n - 1)))
  return run_loop(trainer, student.state, workdir, config, student.checkpoints, student.record, student.resumed,
                  start, should_stop)
