"""Trainer "gkd" (on-policy distillation): its lambda draws, its two kinds of batch (and their privileged rows) in
one layout, a run from a saved teacher that resumes exactly, and its errors."""

import os
import shutil

import jax
import numpy as np
import pytest

from rr import models, train
from rr.config import ConfigError, load_config
from rr.data import SFTBatches
from rr.data.inputs import load_inputs
from rr.sampler import Sampler, Sampling
from rr.train.gkd import GKDBatches, gkd_term_names, on_policy_step
from rr.train.privileged import PrivilegedRows
from rr.train.metrics import read_metrics
from test_kd import _teacher_workdir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GKD = os.path.join(ROOT, "configs", "gkd.py")


def test_lambda_draws_depend_on_seed_and_step_only():
  draws = [on_policy_step(0, n, 0.5) for n in range(400)]
  assert draws == [on_policy_step(0, n, 0.5) for n in range(400)]
  assert 0.4 < np.mean(draws) < 0.6
  assert draws != [on_policy_step(1, n, 0.5) for n in range(400)]
  assert not any(on_policy_step(0, n, 0.0) for n in range(400))
  assert all(on_policy_step(0, n, 1.0) for n in range(400))


def _rows(tokens, positions, row, prompt_width, length):
  """(prompt, completion) token lists of one rollout-layout row: real tokens before `prompt_width`, then `length`."""
  real = positions[row, :prompt_width] >= 0
  assert (positions[row, prompt_width + length:] == -1).all()
  return tokens[row, :prompt_width][real].tolist(), tokens[row, prompt_width:prompt_width + length].tolist()


def _student_rows(batch, row, prompt_width):
  """_rows of the student's row, its length read off the policy mask (which must cover exactly the completion)."""
  length = int(batch.policy_mask[row].sum())
  assert batch.policy_mask[row, prompt_width - 1:prompt_width - 1 + length].all()
  return _rows(batch.tokens, batch.positions, row, prompt_width, length)


def test_fixed_batches_hold_the_data_and_sampled_ones_the_students_samples():
  config = load_config(f"{GKD}:runlocal", [("distill.on_policy", "0.0"), ("distill.sample_temperature", "0.7")])
  inputs = load_inputs(config)
  tokenizer, step = inputs.tokenizer, 3
  picked = SFTBatches(inputs.train, tokenizer, config.train.batch_size, 64, config.seed).example_indices(step)
  self_teacher = PrivilegedRows(tokenizer, inputs.train, "answer", 40)

  def privileged_row(batch, row, example, completion):  # the gold answer, the question, then the same completion
    return _rows(batch.privileged_tokens, batch.privileged_positions, row, self_teacher.prompt_width,
                 len(completion)) == (tokenizer.encode(f"{example.answer}\n{example.question}\n"), completion)

  fixed = GKDBatches(config, tokenizer, inputs.train, self_teacher)
  batch, on_policy = fixed.batch(step, None, None)  # a fixed batch never samples
  assert not on_policy and fixed.width == fixed.prompt_width + 40
  for row, i in enumerate(picked):
    e = inputs.train[i]
    want = tokenizer.encode(f"<think>{e.rationale}</think>{e.answer}") + [tokenizer.eos_id]
    assert _student_rows(batch, row, fixed.prompt_width) == (tokenizer.encode(e.question + "\n"), want)
    assert privileged_row(batch, row, e, want)

  config.distill.on_policy = 1.0
  cfg = models.model_config("nano", vocab_size=tokenizer.vocab_size)
  params = jax.jit(models.init_params, static_argnums=0)(cfg, jax.random.key(0))
  sampler = Sampler(cfg, eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id)
  sampled, on_policy = GKDBatches(config, tokenizer, inputs.train, self_teacher).batch(step, sampler, params)
  assert on_policy
  prompts = [tokenizer.encode(inputs.train[i].question + "\n") for i in picked]
  out = sampler(params, prompts, max_new_tokens=40, strategy=Sampling(temperature=0.7),
                rng=jax.random.fold_in(jax.random.key(config.seed), step))
  for row, i in enumerate(picked):
    completion = out.tokens[row, :out.lengths[row]].tolist()
    assert _student_rows(sampled, row, fixed.prompt_width) == (prompts[row], completion)
    assert privileged_row(sampled, row, inputs.train[i], completion)
  assert jax.tree.structure(sampled) == jax.tree.structure(batch)  # one compiled step for both kinds
  for a, b in zip(jax.tree.leaves(sampled), jax.tree.leaves(batch)):
    assert a.shape == b.shape and a.dtype == b.dtype

  longest = max(len(tokenizer.encode(f"<think>{e.rationale}</think>{e.answer}")) + 1 for e in inputs.train)
  config.distill.max_new_tokens = longest - 1
  with pytest.raises(ConfigError, match=f"raise config.distill.max_new_tokens to at least {longest}$"):
    GKDBatches(config, tokenizer, inputs.train)


def _losses(workdir):
  rows = read_metrics(os.path.join(workdir, "metrics.jsonl"))
  return {r["step"]: (r["train/loss"], r["train/on_policy"]) for r in rows if "train/loss" in r}


def test_gkd_from_a_saved_teacher_trains_and_resumes_exactly(tmp_path):
  config = load_config(f"{GKD}:runlocal")
  teacher = _teacher_workdir(config, str(tmp_path / "teacher"), preset="micro")
  seed, steps = 0, 6
  kinds = [on_policy_step(seed, n, 0.5) for n in range(steps)]
  assert not (kinds[0] or kinds[3]) and any(kinds[:4])  # steps 1 and 4 on the data's rows, one sampled between
  assert set(kinds[4:]) == {False, True}  # and both kinds after the checkpoint at step 4
  config = load_config(f"{GKD}:teacher={teacher},runlocal",
                       [("seed", str(seed)), ("train.steps", str(steps)), ("train.log_every", "1"),
                        ("train.eval_every", "3"), ("train.checkpoint_every", "4"), ("eval.num_examples", "4")])
  assert gkd_term_names(config) == ["kd"]
  config.train.loss_terms = "kd,privileged_kd"  # and the self-teacher's rows through the same runs
  full = str(tmp_path / "full")
  summary = train.run(config, full)
  losses = _losses(full)
  assert summary["finished"] and sorted(losses) == list(range(1, steps + 1))
  assert [on for _, on in losses.values()] == [float(k) for k in kinds]
  rows = [r for r in read_metrics(os.path.join(full, "metrics.jsonl")) if "train/loss" in r]
  for r in rows:
    assert r["train/kd"] > 0 and r["train/privileged_kd"] > 0
    assert r["train/loss"] == pytest.approx(r["train/kd"] + r["train/privileged_kd"])
  assert rows[3]["train/kd"] < rows[0]["train/kd"]  # on the same kind of rows (the data's), nearer the teacher
  assert [r["step"] for r in read_metrics(os.path.join(full, "metrics.jsonl")) if "eval/accuracy" in r] == [3, 6]

  # A run killed after its checkpoint at step 4 (as under SIGKILL), then started again: it runs steps 5 and 6
  # only, the sampled one from the restored student with the same key, and repeats the uninterrupted numbers.
  crashed = str(tmp_path / "crashed")
  shutil.copytree(full, crashed)
  shutil.rmtree(os.path.join(crashed, "checkpoints", str(steps)))
  os.remove(os.path.join(crashed, "summary.json"))
  ran = []
  assert train.run(config, crashed, should_stop=lambda step: ran.append(step) and False)["finished"]
  assert ran == [5, 6]
  again = _losses(crashed)
  assert sorted(again) == sorted(losses)
  np.testing.assert_allclose([again[s] for s in (5, 6)], [losses[s] for s in (5, 6)], rtol=1e-6)


def test_self_distillation_config_and_the_teacher_errors(tmp_path):
  config = load_config(f"{GKD}:teacher={tmp_path},self,runlocal")
  assert (config.distill.teacher, config.init_checkpoint, config.distill.on_policy) == ("self", str(tmp_path), 1.0)
  assert gkd_term_names(config) == ["privileged_kd"]
  config.train.loss_terms = "kd"
  with pytest.raises(ConfigError, match="teacher='self' is privileged self-distillation.*loss_terms=privileged_kd"):
    train.run(config, str(tmp_path / "self_kd"))
  with pytest.raises(ConfigError, match="config.distill.teacher, which is empty"):
    train.run(load_config(f"{GKD}:runlocal"), str(tmp_path / "no_teacher"))
  assert not os.path.exists(tmp_path / "self_kd") and not os.path.exists(tmp_path / "no_teacher")
