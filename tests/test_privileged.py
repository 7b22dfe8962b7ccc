"""Privileged self-distillation (rr.train.privileged): the "privileged_kd" term equals distillation_loss between
the student's and the solution-reading student's logits, computed by hand on unpadded rows; only the student
side gets a gradient; and GRPO takes the term next to its surrogate."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rr import models, tasks, train
from rr.config import ConfigError, base_config, load_config
from rr.data import CharTokenizer
from rr.losses import distillation_loss
from rr.train import privileged  # registers "privileged_kd"
from rr.train.batch import rollout_batch
from rr.train.metrics import read_metrics
from rr.train.objectives import Parts, make_objective

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
C = 12  # completion width


def _gold_text(example, context):
  """The self-teacher's prompt, written out: the gold context, a newline, the question, the prompt's newline."""
  gold = f"<think>{example.rationale}</think>{example.answer}" if context == "solution" else example.answer
  return gold + "\n" + example.question + "\n"


def _setup(group, context):
  tokenizer = CharTokenizer()
  examples = tasks.make_split(tasks.get_task("addition"), "train", 2 if group > 1 else 3, 3, 0)
  rows = len(examples) * group
  rng = np.random.default_rng(7)
  lengths = np.array([C, 1] + [int(n) for n in rng.integers(2, C, rows - 2)], np.int32)  # a full and a 1-token one
  tokens = np.full((rows, C), tokenizer.pad_id, np.int32)
  for r, n in enumerate(lengths):
    tokens[r, :n] = rng.integers(5, 100, n)
    if r % 2 and n < C:
      tokens[r, n - 1] = tokenizer.eos_id
  prompts = [tokenizer.encode(e.question + "\n") for e in examples]
  prompt_width = 16
  batch = rollout_batch(prompts, group, tokens, lengths, np.zeros(tokens.shape, np.float32), tokenizer.eos_id,
                        tokenizer.pad_id, prompt_width + C)
  row_examples = [e for e in examples for _ in range(group)]
  rows_of = privileged.PrivilegedRows(tokenizer, examples, context, C)
  batch = rows_of.add_to(batch, row_examples, tokens, lengths)
  cfg = models.model_config("nano", vocab_size=tokenizer.vocab_size, num_layers=1)  # one layer: a quick compile
  model = models.Decoder(cfg)
  params = jax.jit(models.init_params, static_argnums=0)(cfg, jax.random.key(1))
  pairs = [(tokenizer.encode(e.question + "\n"), tokenizer.encode(_gold_text(e, context)), tokens[r, :lengths[r]])
           for r, e in enumerate(row_examples)]
  return tokenizer, model, params, batch, pairs, prompt_width


def _completion_logits(model, params, rows):
  """[sum of completion lengths, V]: the logits that predict each completion token of `rows` ((prompt,
  completion) pairs), each row unpadded on the left: right padding never changes a causal model's earlier logits."""
  width = max(len(p) + len(c) for p, c in rows)
  ids = np.zeros((len(rows), width), np.int32)
  for r, (p, c) in enumerate(rows):
    ids[r, :len(p) + len(c)] = np.concatenate([p, c])
  logits, _ = model.apply({"params": params}, ids, np.tile(np.arange(width, dtype=np.int32), (len(rows), 1)))
  row_of = np.concatenate([np.full(len(c), r) for r, (_, c) in enumerate(rows)])
  column_of = np.concatenate([len(p) - 1 + np.arange(len(c)) for p, c in rows])
  return logits[row_of, column_of]


def test_privileged_term_is_the_distillation_loss_of_hand_aligned_rows_and_only_the_student_is_trained():
  group = 2  # GRPO's layout: each group's rows share their prompt (and their privileged prompt)
  tokenizer, model, params, batch, pairs, prompt_width = _setup(group, "solution")
  config = base_config()
  config.distill.divergence, config.distill.beta, config.distill.temperature, config.distill.weight = (
      "jsd", 0.3, 0.25, 0.5)
  parts = Parts(model, vocab_size=tokenizer.vocab_size, completion_width=C, shared_prompt=(group, prompt_width))
  objective = make_objective(config, parts, ["privileged_kd"])
  (loss, metrics), grads = jax.jit(jax.value_and_grad(objective, has_aux=True))(params, batch, {}, None)

  def hand(student_params):  # the teacher: the same params, held constant
    student = _completion_logits(model, student_params, [(s, c) for s, _, c in pairs])[None]
    teacher = _completion_logits(model, params, [(t, c) for _, t, c in pairs])[None]
    return 0.5 * distillation_loss(student, teacher, jnp.ones(student.shape[:2]), "jsd", beta=0.3, temperature=0.25,
                                   vocab_size=tokenizer.vocab_size)

  want, want_grads = jax.jit(jax.value_and_grad(hand))(params)
  assert float(want) > 1e-3
  np.testing.assert_allclose(loss, want, rtol=1e-5)
  np.testing.assert_allclose(metrics["privileged_kd"], 2 * want, rtol=1e-5)
  for got, expected in zip(jax.tree.leaves(grads), jax.tree.leaves(want_grads)):
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-7)
  assert max(float(np.abs(g).max()) for g in jax.tree.leaves(want_grads)) > 1e-3


def test_privileged_prompts_read_the_gold_context_before_the_question():
  tokenizer = CharTokenizer()
  example = tasks.make_split(tasks.get_task("addition"), "train", 1, 3, 0)[0]
  for context in ("solution", "answer"):
    assert privileged.PrivilegedRows(tokenizer, [example], context, C).prompt(example) == tokenizer.encode(
        _gold_text(example, context))
  assert tokenizer.unk_id not in tokenizer.encode(_gold_text(example, "solution"))


def test_privileged_term_needs_a_completion_width():
  cfg = models.model_config("nano", vocab_size=CharTokenizer().vocab_size)
  with pytest.raises(ConfigError, match="trainer 'gkd'.*or 'grpo'"):
    make_objective(base_config(), Parts(models.Decoder(cfg)), ["privileged_kd"])


def test_grpo_takes_privileged_kd_next_to_its_surrogate(sft_workdir, tmp_path):
  config = load_config(os.path.join(ROOT, "configs", "grpo.py") + ":runlocal",
                       [("init_checkpoint", sft_workdir), ("train.steps", "2"), ("eval.num_examples", "0"),
                        ("train.loss_terms", "policy,privileged_kd"), ("distill.privileged_context", "answer")])
  summary = train.run(config, str(tmp_path / "grpo"))
  rows = [r for r in read_metrics(str(tmp_path / "grpo" / "metrics.jsonl")) if "train/privileged_kd" in r]
  assert summary["finished"] and [r["step"] for r in rows] == [1, 2]
  assert all(np.isfinite(r["train/loss"]) and r["train/privileged_kd"] > 0 for r in rows)
  # the surrogate's own metrics too
  assert all("train/clip_ratio/region_mean" in r or "train/entropy" in r for r in rows)


def test_grpo_scores_its_rollouts_with_a_frozen_teacher_under_kd(sft_workdir, tmp_path):
  """policy,kd in GRPO: the teacher (a model of another size, random, so it disagrees with the policy) is loaded as
  a frozen model and scores each step's sampled tokens; its divergence is in the loss."""
  from test_kd import _teacher_workdir

  config = load_config(os.path.join(ROOT, "configs", "grpo.py") + ":runlocal",
                       [("init_checkpoint", sft_workdir), ("train.steps", "2"), ("eval.num_examples", "0"),
                        ("train.loss_terms", "policy,kd"), ("distill.weight", "3.0")])
  config.distill.teacher = _teacher_workdir(config, str(tmp_path / "teacher"))
  train.run(config, str(tmp_path / "grpo"))
  rows = [r for r in read_metrics(str(tmp_path / "grpo" / "metrics.jsonl")) if "train/kd" in r]
  assert [r["step"] for r in rows] == [1, 2]
  assert all(r["train/kd"] > 1e-3 for r in rows)
  for r in rows:  # one loss: the surrogate plus distill.weight times the divergence
    np.testing.assert_allclose(r["train/loss"], r["train/pg_loss"] + 3.0 * r["train/kd"], rtol=1e-4, atol=1e-6)
