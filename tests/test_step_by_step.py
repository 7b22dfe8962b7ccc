"""Distilling step-by-step: the term is alpha * answer NLL + (1 - alpha) * rationale NLL, each a token mean over
its own task's rows (checked against the model's logits in numpy), and an SFT run trains on the two tasks and
evaluates the student on the predict task."""

import json
import os

import jax
import numpy as np
import pytest

from rr import models, train
from rr.config import ConfigError, load_config
from rr.data import CharTokenizer, SFTBatches
from rr.tasks import make_split
from rr.train import setup
from rr.train.batch import sft_batch
from rr.train.objectives import Parts, make_objective

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SFT_CONFIG = os.path.join(ROOT, "configs", "sft.py") + ":runlocal"


def _token_mean_nll(logits, tokens, mask):
  """-log softmax(logits[t])[tokens[t + 1]], averaged over the positions where mask is 1, in float64."""
  shifted = logits.astype(np.float64) - logits.max(-1, keepdims=True)
  logp = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
  b, t = np.nonzero(mask[:, :-1])
  return -logp[b, t, tokens[b, t + 1]].mean()


def test_term_is_alpha_times_the_answer_nll_plus_one_minus_alpha_times_the_rationale_nll():
  tok = CharTokenizer()
  data = make_split("addition", "train", 6, difficulty=2, seed=0)
  arrays = SFTBatches(data, tok, batch_size=6, max_len=40, seed=0, step_by_step=True).batch(0)
  batch = sft_batch(arrays).replace(rationale_mask=arrays["rationale_mask"])
  config = load_config(SFT_CONFIG)
  config.distill.alpha = 0.3
  cfg = models.model_config("nano", vocab_size=tok.vocab_size)
  model, params = models.Decoder(cfg), models.init_params(cfg, jax.random.key(1))
  loss, metrics = jax.jit(make_objective(config, Parts(model), ["step_by_step"]))(params, batch, {}, None)
  logits = np.asarray(model.apply({"params": params}, arrays["tokens"], arrays["positions"])[0])
  predict_rows, explain_rows = np.arange(6) % 2 == 0, np.arange(6) % 2 == 1
  answer = _token_mean_nll(logits[predict_rows], arrays["tokens"][predict_rows], arrays["loss_mask"][predict_rows])
  rationale = _token_mean_nll(logits[explain_rows], arrays["tokens"][explain_rows],
                              arrays["loss_mask"][explain_rows])
  np.testing.assert_allclose(metrics["answer_nll"], answer, rtol=1e-5)
  np.testing.assert_allclose(metrics["rationale_nll"], rationale, rtol=1e-5)
  np.testing.assert_allclose(loss, 0.3 * answer + 0.7 * rationale, rtol=1e-5)
  # Each task is its own token mean: the answer's few tokens weigh alpha, not their share of all tokens.
  assert metrics["answer_tokens"] * 4 < metrics["rationale_tokens"]
  pooled = _token_mean_nll(logits, arrays["tokens"], arrays["loss_mask"])
  assert abs(float(loss) - pooled) > 1e-3
  with pytest.raises(ValueError, match="predict and explain rows"):
    make_objective(config, Parts(model), ["step_by_step"])(params, sft_batch(arrays), {}, None)


def test_sft_run_trains_both_tasks_and_evaluates_with_the_predict_prefix(tmp_path, monkeypatch):
  overrides = [("train.loss_terms", "step_by_step"), ("train.steps", "4"), ("train.log_every", "2"),
               ("train.eval_every", "0"), ("eval.num_examples", "2"),
               ("data.max_len", "56"), ("optim.lr", "3e-3")]
  config = load_config(SFT_CONFIG, overrides)
  config.train.batch_size = 7
  with pytest.raises(ConfigError, match="batch_size=7 must be even"):
    train.run(config, str(tmp_path / "odd"))
  config.train.batch_size, config.data.thought_dropout = 8, 0.5
  with pytest.raises(ConfigError, match="thought_dropout"):
    train.run(config, str(tmp_path / "dropout"))
  assert not os.path.exists(tmp_path / "odd") and not os.path.exists(tmp_path / "dropout")
  config.data.thought_dropout = 0.0
  asked = []  # the questions the evaluation samples answers to (sampling itself is tested in test_eval.py)
  monkeypatch.setattr(setup, "evaluate_accuracy", lambda sampler, params, tokenizer, examples, **kw: asked.extend(
      e.question for e in examples) or {"eval/accuracy": 0.0})
  summary = train.run(config, str(tmp_path / "run"))
  assert summary["finished"] and "eval/accuracy" in summary
  assert len(asked) == 2 and all(q.startswith("predict: ") and "+" in q for q in asked)
  rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl") if "train/loss" in line]
  assert len(rows) == 2
  for row in rows:  # the logged loss is the two tasks' weighted sum, alpha = 0.5 by default
    np.testing.assert_allclose(row["train/loss"], 0.5 * row["train/answer_nll"] + 0.5 * row["train/rationale_nll"],
                               rtol=1e-5)
  assert rows[-1]["train/rationale_nll"] < rows[0]["train/rationale_nll"]
