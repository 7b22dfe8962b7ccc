"""Cached top-k teacher logits (config.distill.logit_cache): the cache holds the teacher's k best logits and ids of
every train row, an SFT run from it trains the numbers the in-step teacher does, a later run reads it with no
teacher, and a cache of other rows or settings is refused and left as it was."""

import json
import os

import jax
import numpy as np
import pytest
from test_kd import _teacher_workdir

from rr import models, train
from rr.config import ConfigError, load_config
from rr.data import SFTBatches
from rr.data.inputs import load_inputs
from rr.sharding import make_mesh
from rr.train import setup
from rr.train.batch import sft_batch
from rr.train.frozen import load_frozen
from rr.train.objectives import Parts, make_objective
from rr.train.setup import build_model_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOP_K = 4


@pytest.fixture
def no_eval(monkeypatch):
  """The runs here compare training numbers; the held-out evaluation is tested elsewhere and is skipped."""
  monkeypatch.setattr(setup, "evaluate_accuracy", lambda *args, **kwargs: {})


def _config(teacher: str, cache: str = ""):
  overrides = [("train.loss_terms", "kd"), ("train.steps", "2"), ("train.log_every", "1"), ("train.eval_every", "0"),
               ("distill.divergence", "jsd"), ("distill.temperature", "2.0"), ("distill.top_k", str(TOP_K))]
  config = load_config(os.path.join(ROOT, "configs", "sft.py") + ":runlocal", overrides)
  config.distill.teacher, config.distill.logit_cache = teacher, cache
  return config


def _losses(workdir) -> list[float]:
  return [json.loads(line)["train/loss"] for line in open(os.path.join(workdir, "metrics.jsonl"))
          if "train/loss" in line]


def _snapshot(path) -> dict:
  return {name: open(os.path.join(path, name), "rb").read() for name in sorted(os.listdir(path))}


def _refused(config, workdir, match):
  with pytest.raises(ConfigError, match=match):
    train.run(config, str(workdir))
  assert not os.path.exists(workdir)  # refused before any work


def test_a_run_from_the_cache_trains_as_the_in_step_teacher_a_second_needs_no_teacher_and_others_are_refused(
    tmp_path, no_eval):
  teacher = _teacher_workdir(_config(""), str(tmp_path / "teacher"), preset="nano")
  cache = str(tmp_path / "caches" / "kd")
  config = _config(teacher, cache)
  train.run(config, str(tmp_path / "builds"))
  assert sorted(os.listdir(tmp_path / "caches")) == ["kd"]  # no half-built directory left beside it

  # The first step's loss is the kd term with the teacher run in the step, on the run's first batch and params.
  inputs = load_inputs(config)
  vocab = inputs.tokenizer.vocab_size
  batches = SFTBatches(inputs.train, inputs.tokenizer, config.train.batch_size, config.data.max_len, config.seed)
  frozen = load_frozen(teacher, make_mesh(), vocab_size=vocab)
  student_cfg = build_model_config(config, vocab)
  params = models.init_params(student_cfg, jax.random.key(config.seed))
  parts = Parts(models.Decoder(student_cfg), {"teacher": frozen.model}, vocab_size=vocab)
  in_step = jax.jit(make_objective(config, parts, ["kd"]))(params, sft_batch(batches.batch(0)),
                                                           {"teacher": frozen.params}, None)[0]
  from_cache = _losses(tmp_path / "builds")
  assert len(from_cache) == 2 and float(in_step) > 1e-4
  np.testing.assert_allclose(from_cache[0], in_step, rtol=1e-5)

  # The cache is the teacher's top-k over the tokenizer's ids, row by row in example order.
  meta = json.load(open(os.path.join(cache, "meta.json")))
  assert meta["top_k"] == TOP_K and meta["num_rows"] == len(inputs.train) and meta["teacher"] == teacher
  ids, logits = np.load(os.path.join(cache, "ids.npy")), np.load(os.path.join(cache, "logits.npy"))
  assert ids.shape == logits.shape == (len(inputs.train), config.data.max_len, TOP_K)
  assert ids.dtype == np.int32 and logits.dtype == np.float32
  rows = batches.rows([5, 2])
  full = np.asarray(frozen.model.apply({"params": frozen.params}, rows["tokens"], rows["positions"])[0])[..., :vocab]
  real = rows["positions"] >= 0
  for r, i in enumerate([5, 2]):
    want_ids = np.argsort(-full[r], axis=-1)[:, :TOP_K]
    np.testing.assert_array_equal(ids[i][real[r]], want_ids[real[r]])
    np.testing.assert_allclose(logits[i][real[r]], np.take_along_axis(full[r], want_ids, -1)[real[r]], rtol=1e-5,
                               atol=1e-5)

  # A second run reads the cache and loads no teacher at all; the cache is read, never written.
  before = _snapshot(cache)
  train.run(_config("", cache), str(tmp_path / "reuses"))
  np.testing.assert_allclose(_losses(tmp_path / "reuses"), from_cache, rtol=1e-5)

  # A cache of other rows, another teacher precision or another k is refused, and left as it was.
  for dotted, value, match in (("distill.top_k", 3, r"logit_cache='.*kd'.*top_k: cache 4, this run 3"),
                               ("data.train_size", 128, "num_rows: cache 256, this run 128.*fingerprint"),
                               ("data.difficulty", 2, "^((?!num_rows).)*fingerprint: cache '[0-9a-f]+', this run"),
                               ("distill.teacher_dtype", "bfloat16", "teacher_dtype")):
    config = _config(teacher, cache)
    group, key = dotted.split(".")
    config[group][key] = value
    _refused(config, tmp_path / "refused", match)
  assert _snapshot(cache) == before


def test_the_cache_settings_that_cannot_work_are_one_error_each_before_any_work(tmp_path):
  cache = str(tmp_path / "kd")
  _refused(_config("", cache), tmp_path / "run", "does not exist yet and config.distill.teacher is empty")
  config = _config("", cache)
  config.data.thought_dropout = 0.25  # the cached rows would not be the trained rows
  _refused(config, tmp_path / "run", "thought_dropout")
  config = _config("", cache)
  config.train.loss_terms = "kd,step_by_step"
  config.data.max_len = 56
  _refused(config, tmp_path / "run", "step_by_step")
  config = _config("", cache)
  config.distill.top_k = 0
  _refused(config, tmp_path / "run", "set config.distill.top_k > 0")
  mine = tmp_path / "mine"
  mine.mkdir()
  (mine / "notes.txt").write_text("a user's file")
  _refused(_config("", str(mine)), tmp_path / "run", "is not a teacher logit cache")
  assert os.listdir(mine) == ["notes.txt"] and (mine / "notes.txt").read_text() == "a user's file"
