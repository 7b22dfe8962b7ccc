"""The "kd" objective term: logit distillation from a frozen teacher of another size, computed in the same
jitted step, equals rr.losses.distillation_loss on the two models' own logits, and trains a student."""

import json
import os

import jax
import numpy as np
import pytest

from rr import models, train
from rr.config import ConfigError, load_config
from rr.losses import distillation_loss
from rr.train.batch import sft_batch
from rr.train.frozen import load_frozen
from rr.train.objectives import Parts, make_objective

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _teacher_workdir(config, path: str, preset: str = "tiny") -> str:
  """A saved rr run of another (bigger) preset than the student, with the student's tokenizer."""
  from rr.checkpoint import Checkpoints
  from rr.data.tokenizers import tokenizer_from_config
  from rr.sharding import make_mesh
  from rr.train.optimizer import make_optimizer
  from rr.train.state import init_train_state, run_record

  vocab = tokenizer_from_config(config).vocab_size
  cfg = models.model_config(preset, vocab_size=vocab)
  state, _ = init_train_state(cfg, make_optimizer(config.optim, 10, cfg.param_dtype), make_mesh(), seed=3)
  checkpoints = Checkpoints(os.path.join(path, "checkpoints"))
  checkpoints.save(1, state, run_record(cfg, vocab))
  checkpoints.close()
  return path


@pytest.mark.parametrize("divergence,top_k", [("forward_kl", 0), ("jsd", 3)])
def test_kd_term_is_the_distillation_loss_of_the_two_models_logits(tmp_path, divergence, top_k):
  from rr.data import SFTBatches
  from rr.data.inputs import load_inputs
  from rr.sharding import make_mesh

  config = load_config(os.path.join(ROOT, "configs", "sft.py") + ":runlocal")
  config.distill.divergence, config.distill.top_k, config.distill.temperature, config.distill.weight = (
      divergence, top_k, 2.0, 0.5)
  inputs = load_inputs(config)
  vocab = inputs.tokenizer.vocab_size
  teacher = load_frozen(_teacher_workdir(config, str(tmp_path / "teacher")), make_mesh(), vocab_size=vocab)
  student_cfg = models.model_config("nano", vocab_size=vocab)
  assert teacher.model_cfg.hidden_size != student_cfg.hidden_size  # another size, one tokenizer
  student = models.Decoder(student_cfg)
  params = models.init_params(student_cfg, jax.random.key(0))
  arrays = SFTBatches(inputs.train, inputs.tokenizer, 4, config.data.max_len, 0).batch(0)
  batch = sft_batch(arrays)
  parts = Parts(student, {"teacher": teacher.model}, vocab_size=vocab)
  loss, metrics = make_objective(config, parts, ["kd"])(params, batch, {"teacher": teacher.params}, None)
  s_logits, _ = student.apply({"params": params}, arrays["tokens"], arrays["positions"])
  t_logits, _ = teacher.model.apply({"params": teacher.params}, arrays["tokens"], arrays["positions"])
  want = distillation_loss(s_logits, t_logits, arrays["loss_mask"], divergence, temperature=2.0, top_k=top_k,
                           vocab_size=vocab)
  np.testing.assert_allclose(metrics["kd"], want, rtol=1e-5)
  np.testing.assert_allclose(loss, 0.5 * want, rtol=1e-5)
  assert float(want) > 1e-4


def test_sft_distils_from_a_teacher_workdir_and_a_missing_teacher_is_one_error(tmp_path):
  overrides = [("train.steps", "6"), ("train.log_every", "2"), ("train.eval_every", "0"), ("eval.num_examples", "4"),
               ("train.loss_terms", "kd")]
  config = load_config(os.path.join(ROOT, "configs", "sft.py") + ":runlocal", overrides)
  with pytest.raises(ConfigError, match="config.distill.teacher is empty"):
    train.run(config, str(tmp_path / "no_teacher"))
  config.distill.teacher = _teacher_workdir(config, str(tmp_path / "teacher"))
  config.optim.lr = 3e-3
  summary = train.run(config, str(tmp_path / "run"))
  rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
  kd = [r["train/kd"] for r in rows if "train/kd" in r]
  assert summary["finished"] and len(kd) == 3 and kd[-1] < kd[0]
