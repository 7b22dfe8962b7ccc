"""Gradient accumulation (train.micro_batches, rr.train.step.accumulated_grads): the micro-batches' loss and
gradient add up to the whole batch's for every built-in term, although the micro-batches hold different numbers
of target tokens (where a mean of the micro-batches' own means would be off, checked too), and a micro-batched
train step makes the same update as the whole-batch step."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rr import models, sharding
from rr.config import ConfigError, base_config
from rr.losses import PolicyLossConfig
from rr.train.batch import TrainBatch, rollout_batch
from rr.train.objectives import Parts, make_objective
from rr.train.ppo import ValueConfig
from rr.train.step import accumulated_grads, check_micro_batches, make_train_step

VOCAB = 24
CFG = models.model_config("nano", vocab_size=VOCAB)
MESH = sharding.make_mesh()


def _sft_rows(rng, rows=8, width=12) -> TrainBatch:
  """Rows of 4..12 real tokens; demonstration targets from a random column on, so the rows' counts differ."""
  tokens = rng.integers(2, VOCAB, (rows, width)).astype(np.int32)
  positions = np.full((rows, width), -1, np.int32)
  demo = np.zeros((rows, width), np.float32)
  rationale = np.zeros((rows, width), np.float32)
  for r in range(rows):
    length = int(rng.integers(4, width + 1))
    positions[r, :length] = np.arange(length)
    start = int(rng.integers(1, length - 1))
    demo[r, start:length - 1] = 1.0
    if r % 2:  # the explain rows of step_by_step: their demo tokens are rationale tokens
      rationale[r] = demo[r]
  return TrainBatch(tokens=jnp.asarray(tokens), positions=jnp.asarray(positions), demo_mask=jnp.asarray(demo),
                    rationale_mask=jnp.asarray(rationale))


def _rollout_rows(rng) -> TrainBatch:
  """2 groups x 4 completions of different lengths, as the GRPO and PPO trainers lay them out."""
  tokens = rng.integers(2, VOCAB, (8, 5)).astype(np.int32)
  batch = rollout_batch([[3, 4, 5], [6, 7]], 4, tokens, np.array([5, 1, 2, 4, 1, 5, 3, 2]),
                        rng.normal(size=(8, 5)).astype(np.float32) - 2.0, eos_id=1, pad_id=0, width=13)
  batch = batch.replace(advantages=rng.normal(size=8).astype(np.float32),
                        old_logp=np.where(batch.policy_mask > 0, -2.0 + 0.1 * rng.normal(size=(8, 13)), 0.0)
                        .astype(np.float32),
                        returns=rng.normal(size=(8, 13)).astype(np.float32),
                        old_values=rng.normal(size=(8, 13)).astype(np.float32) * 0.1,
                        value_mask=batch.policy_mask)
  return jax.tree.map(jnp.asarray, batch)


def _config(**distill):
  config = base_config()
  for key, value in distill.items():
    config.distill[key] = value
  return config


def _params(seed):
  return models.init_params(CFG, jax.random.key(seed))


CASES = {
    "nll": (["nll"], "sft", {}),
    "step_by_step": (["step_by_step"], "sft", {}),
    "kd": (["nll", "kd"], "sft", {}),
    "policy_token_mean": (["policy", "kl", "entropy"], "rollout", {"aggregation": "token-mean"}),
    "ppo_value_seq_mean": (["policy", "value"], "rollout", {"aggregation": "seq-mean-token-mean"}),
}


def _objective_and_inputs(case):
  names, layout, loss = CASES[case]
  rng = np.random.default_rng(7)
  teacher = models.Decoder(CFG)
  if layout == "sft":
    parts = Parts(models.Decoder(CFG), {"teacher": teacher}, vocab_size=VOCAB)
    batch, frozen = _sft_rows(rng), {"teacher": _params(1)}
  else:
    loss_cfg = PolicyLossConfig(kl_beta=0.1, entropy_coef=0.01, **loss)
    value_cfg = ValueConfig() if "value" in names else None
    parts = Parts(models.Decoder(CFG), {"reference": teacher}, shared_prompt=(4, 8), loss_cfg=loss_cfg,
                  value_cfg=value_cfg, vocab_size=VOCAB)
    batch, frozen = _rollout_rows(rng), {"reference": _params(1)}
  trainable = _params(0)
  if "value" in names:
    head = models.init_value_head(CFG)
    trainable = {"params": trainable, "value_head": {**head, "kernel": head["kernel"] + 0.01}}
  config = _config(weight=0.7, alpha=0.3)
  config.rl.entropy_coef, config.rl.kl_beta = 0.01, 0.1
  return make_objective(config, parts, names), trainable, batch, frozen


@pytest.mark.parametrize("case, micro", [("nll", 4)] + [(case, 2) for case in CASES if case != "nll"])
def test_micro_batches_add_up_to_the_whole_batch(case, micro):
  """(A rollout micro-batch holds whole groups: 8 rows in groups of 4 split in 2 at most.)"""
  objective, trainable, batch, frozen = _objective_and_inputs(case)
  rng = jax.random.key(0)
  grads_of = jax.value_and_grad(objective, has_aux=True)

  @jax.jit  # both in one compilation
  def whole_and_accumulated(trainable, batch, frozen):
    return grads_of(trainable, batch, frozen, rng), accumulated_grads(grads_of, objective, trainable, batch, frozen,
                                                                      rng, micro, MESH)

  ((loss, _), grads), (acc_loss, _, acc_grads) = whole_and_accumulated(trainable, batch, frozen)
  np.testing.assert_allclose(float(acc_loss), float(loss), rtol=1e-5, atol=1e-7)
  for got, want in zip(jax.tree.leaves(acc_grads), jax.tree.leaves(grads)):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want, np.float32), rtol=2e-4, atol=2e-7)


def test_the_mean_of_the_micro_batches_own_losses_would_be_off():
  """What the normalisers are for: the micro-batches' own token means, averaged, are not the whole batch's."""
  objective, trainable, batch, frozen = _objective_and_inputs("nll")
  loss = jax.jit(lambda b: objective(trainable, b, frozen, None)[0])
  whole = float(loss(batch))
  halves = [jax.tree.map(lambda x, s=s: x[s], batch) for s in (slice(0, 4), slice(4, 8))]
  naive = np.mean([float(loss(half)) for half in halves])
  assert abs(naive - whole) > 1e-3


def test_a_micro_batched_step_makes_the_whole_batch_update():
  objective, params, batch, frozen = _objective_and_inputs("kd")
  optimizer = optax.sgd(0.5)  # the update is the gradient itself (Adam would magnify float noise in tiny ones)
  shardings = {"step": sharding.replicated(MESH), "params": jax.tree.map(lambda _: sharding.replicated(MESH), params),
               "opt_state": jax.tree.map(lambda _: sharding.replicated(MESH), optimizer.init(params))}
  frozen_sh = {"teacher": jax.tree.map(lambda _: sharding.replicated(MESH), frozen["teacher"])}
  results = []
  for micro in (1, 2):
    step = make_train_step(objective, optimizer, shardings, MESH, frozen_sh, micro_batches=micro)
    state = {"step": jnp.zeros((), jnp.int32), "params": jax.tree.map(jnp.copy, params),
             "opt_state": optimizer.init(params)}
    for _ in range(2):
      state, metrics = step(state, batch, frozen)
    results.append((float(metrics["loss"]), float(metrics["grad_norm"]), state["params"]))
  (loss1, norm1, params1), (loss2, norm2, params2) = results
  np.testing.assert_allclose([loss2, norm2], [loss1, norm1], rtol=1e-5)
  for a, b in zip(jax.tree.leaves(params2), jax.tree.leaves(params1)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)


@pytest.mark.parametrize("micro, group, message", [(3, 1, "split the 8 rows"), (0, 1, ">= 1"),
                                                   (4, 4, "whole groups of 4")])
def test_micro_batches_that_do_not_split_the_rows_are_refused(micro, group, message):
  with pytest.raises(ConfigError, match=message):
    check_micro_batches(micro, 8, MESH, "train.batch_size", group)
  check_micro_batches(2, 8, MESH, "train.batch_size", 4 if group > 1 else 1)


@pytest.mark.parametrize("config_file, flag", [("sft.py:runlocal", "--config.train.micro_batches=3"),
                                               ("grpo.py:runlocal", "--config.train.micro_batches=16")])
def test_the_trainers_read_train_micro_batches_and_refuse_a_bad_one_before_work(tmp_path, capsys, config_file, flag):
  from rr.main import main

  root = __file__.rsplit("/tests/", 1)[0]
  workdir = tmp_path / "run"
  assert main(["--config", f"{root}/configs/{config_file}", flag, "--workdir", str(workdir)]) == 2
  err = capsys.readouterr().err
  assert "config.train.micro_batches" in err and err.count("\n") == 1
  assert not (workdir / "checkpoints").exists()
