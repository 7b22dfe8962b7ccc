"""Privileged self-distillation: the student, reading the gold solution (or answer) before the question, is its
own teacher (docs/methods.md, "Privileged self-distillation").

Each student row of a rollout-layout batch (prompt left-padded to P, completion from column P on, C columns) gets
a privileged row: the tokens of `format_prompt(context + "\\n" + question)`, left-padded to a fixed width P', then
the same completion tokens from column P' on (batch.privileged_tokens / privileged_positions). The objective term
"privileged_kd" runs the trainable params, under stop_gradient, on the privileged rows and distils their
next-token distributions into the student's on the completion tokens. The trainers that lay batches out this way
fill the rows when the term is named: gkd (config.distill.teacher = "self") and grpo (train.loss_terms=
policy,privileged_kd). The teacher is the current params, not an EMA of them.
"""

from __future__ import annotations

from typing import Sequence

import jax
import numpy as np

from rr.config import ConfigError
from rr.data import format_completion, format_prompt
from rr.losses import distillation_loss
from rr.models import shared_prompt_forward
from rr.train.batch import TrainBatch, rollout_batch
from rr.train.objectives import TERMS, Forward, Parts, Term

SELF_TEACHER = "self"  # config.distill.teacher: the student is its own (privileged) teacher
GOLD_CONTEXTS = {"solution": format_completion, "answer": lambda example: example.answer}  # distill.privileged_context


def privileged_question(example, context: str) -> str:
  """The question as the self-teacher reads it: the gold context, a newline, then the question. context "solution"
  is the gold completion's text (format_completion: "<think>" rationale "</think>" answer), "answer" the answer."""
  return GOLD_CONTEXTS[context](example) + "\n" + example.question


def policy_question(example, context: str) -> str:
  """The question a trained or sampled model reads (config.data.prompt_context): the plain question for "", else
  `privileged_question`'s gold context first (a teacher that explains a known solution, RLT 2506.08388)."""
  return privileged_question(example, context) if context else example.question


class PrivilegedRows:
  """Lays out the self-teacher's rows of a batch; P' is fixed from the whole train set, so one step compiles."""

  def __init__(self, tokenizer, examples: Sequence, context: str, completion_width: int):
    self.tokenizer, self.context, self.completion_width = tokenizer, context, completion_width
    self._prompts = {}  # encoded once per example, not once per step
    for e in examples:
      self.prompt(e)
    self.prompt_width = -(-max(map(len, self._prompts.values())) // 8) * 8

  def prompt(self, example) -> list[int]:
    key = (example.question, example.rationale, example.answer)
    if key not in self._prompts:
      self._prompts[key] = self.tokenizer.encode(format_prompt(privileged_question(example, self.context),
                                                               self.tokenizer))
    return self._prompts[key]

  def add_to(self, batch: TrainBatch, examples: Sequence, tokens_NxC: np.ndarray, lengths_N: np.ndarray) -> TrainBatch:
    """`batch` with the privileged rows of its completions `tokens_NxC` (row i continues `examples[i]`)."""
    rows = rollout_batch([self.prompt(e) for e in examples], 1, tokens_NxC, lengths_N,
                         np.zeros(tokens_NxC.shape, np.float32), self.tokenizer.eos_id, self.tokenizer.pad_id,
                         self.prompt_width + self.completion_width)
    return batch.replace(privileged_tokens=rows.tokens, privileged_positions=rows.positions)


def check_teacher(config, names: Sequence[str]) -> None:
  """The "kd" term needs a frozen teacher, which "self" is not: one error before any work."""
  if config.distill.teacher == SELF_TEACHER and "kd" in names:
    raise ConfigError("config.distill.teacher='self' is privileged self-distillation (objective term "
                      f"'privileged_kd'), but the objective {list(names)} has 'kd', which distils from a frozen "
                      "teacher model: set config.train.loss_terms=privileged_kd, or point config.distill.teacher at "
                      "an rr run's --workdir or a Hugging Face model directory")


@TERMS.register("privileged_kd")
def privileged_kd_term(config, parts: Parts) -> Term:
  """config.distill.weight * the divergence between the self-teacher's (the params under stop_gradient, on the
  privileged rows) and the student's next-token distributions over the completion tokens the policy mask keeps."""
  d = config.distill
  width = parts.completion_width
  if width is None:
    raise ConfigError("config.train.loss_terms has 'privileged_kd', which reads completions at a fixed width: "
                      "run it with trainer 'gkd' (config.distill.teacher='self') or 'grpo', not 'sft'")
  group = parts.shared_prompt[0] if parts.shared_prompt else 1

  def term(fwd: Forward):
    batch = fwd.batch
    if batch.privileged_tokens is None:
      raise ValueError("objective term 'privileged_kd' needs the batch's privileged rows "
                       "(rr.train.privileged.PrivilegedRows), which this trainer did not fill")
    student_start = batch.tokens.shape[1] - width - 1  # the logits that predict completion token 0
    teacher_width = batch.privileged_tokens.shape[1]
    shared = (group, teacher_width - width) if group > 1 else None  # a group's rows share one privileged prompt
    teacher_logits, _ = shared_prompt_forward(parts.model, jax.lax.stop_gradient(fwd.params),
                                              batch.privileged_tokens, batch.privileged_positions, shared)
    teacher_start = teacher_width - width - 1
    mask = fwd.policy_mask[:, student_start:student_start + width]
    loss = distillation_loss(fwd.logits[:, student_start:student_start + width],
                             teacher_logits[:, teacher_start:teacher_start + width], mask, d.divergence,
                             beta=d.beta, temperature=d.temperature, top_k=d.top_k, vocab_size=parts.vocab_size)
    return d.weight * loss * fwd.share("policy", mask.sum()), {"privileged_kd": jax.lax.stop_gradient(loss)}

  return term
