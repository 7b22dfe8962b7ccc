"""PPO (`rl.advantage = "ppo"`): the decoder's hidden states, the value head's targets, the step, a short run."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rr import models, sharding, train
from rr.config import ConfigError, apply_overrides, base_config, load_config
from rr.losses import PolicyLossConfig, token_log_probs
from rr.train import ppo
from rr.train.batch import put_batch, rollout_batch
from rr.train.metrics import read_metrics
from rr.train.objectives import Parts, make_objective
from rr.train.optimizer import make_optimizer
from rr.train.state import init_train_state
from rr.train.step import make_train_step

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CFG = models.model_config("nano", vocab_size=24)


def test_hidden_states_leave_logits_unchanged_feed_the_lm_head_and_are_causal():
  params = models.init_params(CFG, jax.random.key(0))
  model = models.Decoder(CFG)
  tokens = jnp.array([[3, 4, 5, 6, 7, 8], [9, 10, 11, 12, 13, 14]], jnp.int32)
  positions = jnp.broadcast_to(jnp.arange(6, dtype=jnp.int32), (2, 6))
  logits, _ = model.apply({"params": params}, tokens, positions)
  logits_h, _, hidden = model.apply({"params": params}, tokens, positions, return_hidden=True)
  np.testing.assert_array_equal(logits_h, logits)
  assert hidden.shape == (2, 6, CFG.hidden_size)
  # Tied embeddings: the hidden states are exactly what the lm head reads (after the final norm).
  np.testing.assert_allclose(np.asarray(hidden) @ np.asarray(params["embed"]["embedding"]).T, logits,
                             rtol=1e-5, atol=1e-5)
  changed = tokens.at[:, 4].set(2)
  _, _, hidden_changed = model.apply({"params": params}, changed, positions, return_hidden=True)
  np.testing.assert_array_equal(hidden_changed[:, :4], hidden[:, :4])
  assert not np.allclose(hidden_changed[:, 4], hidden[:, 4])
  # The value head is a linear map of them: V = h . w + b.
  head = {"kernel": jnp.ones((CFG.hidden_size, 1)) * 0.5, "bias": jnp.array([2.0])}
  np.testing.assert_allclose(models.apply_value_head(head, hidden), np.asarray(hidden).sum(-1) * 0.5 + 2.0,
                             rtol=1e-5)


def test_terminal_rewards_and_whitening_by_hand():
  mask = jnp.array([[0, 1, 1, 0], [1, 1, 1, 1]], jnp.float32)
  np.testing.assert_array_equal(ppo.terminal_rewards(jnp.array([2.0, -1.0]), mask),
                                [[0, 0, 2, 0], [0, 0, 0, -1]])
  # Active values 1, 2, 3: mean 2, variance 2/3.
  x = jnp.array([[9.0, 1.0, 2.0, 3.0]])
  np.testing.assert_allclose(ppo.whiten(x, jnp.array([[0.0, 1, 1, 1]])),
                             [[0.0, -1 / np.sqrt(2 / 3), 0.0, 1 / np.sqrt(2 / 3)]], rtol=1e-5)


def rollout(rewards, valid):
  """Prompt [3, 4, 5] left-padded to 5 columns, 3-token completions (one per reward): log-probs and values are
  read at columns 4, 5, 6. `rewards` and `valid` go in as the collector leaves them (NaN where a reward failed)."""
  tokens = np.array([[7, 8, 1], [9, 10, 1], [11, 12, 1]], np.int32)[:len(rewards)]
  batch = rollout_batch([[3, 4, 5]], len(rewards), tokens, np.full(len(rewards), 3),
                        np.zeros((len(rewards), 3), np.float32), eos_id=1, pad_id=0, width=8)
  return batch.replace(rewards=np.array(rewards, np.float32), valid=np.array(valid, np.float32))


def ppo_setup(lr=1e-2):
  optim = base_config().optim
  optim.lr, optim.warmup_steps, optim.weight_decay = lr, 0, 0.0
  optimizer = make_optimizer(optim, 100, CFG.param_dtype)
  mesh = sharding.make_mesh()
  state, shardings = init_train_state(CFG, optimizer, mesh, seed=0, value_head=True)
  return optimizer, mesh, state, shardings


def test_targets_are_gae_of_the_terminal_reward_with_a_fresh_head():
  _, mesh, state, _ = ppo_setup()
  np.testing.assert_array_equal(state["value_head"]["kernel"], 0.0)  # a fresh head: V = 0
  cfg = ppo.ValueConfig(gamma=1.0, lam=0.5, whiten=False)
  targets = jax.jit(ppo.make_targets(models.Decoder(CFG), cfg))
  out = targets(state, put_batch(rollout([2.0, 5.0], [True, False]), mesh))
  # V = 0, so delta is the reward (2, on the last token) and A_t = (gamma * lam)^(steps to the end) * 2.
  np.testing.assert_allclose(out.advantages[0], [0, 0, 0, 0, 0.5, 1.0, 2.0, 0], rtol=1e-6)
  np.testing.assert_allclose(out.returns[0], [0, 0, 0, 0, 0.5, 1.0, 2.0, 0], rtol=1e-6)
  np.testing.assert_array_equal(out.advantages[1], 0.0)  # the row whose reward failed
  np.testing.assert_array_equal(out.value_mask, [[0, 0, 0, 0, 1, 1, 1, 0], [0] * 8])
  np.testing.assert_array_equal(out.old_values, 0.0)
  assert out.old_logp.shape == (2, 8)


@pytest.mark.parametrize("whiten", [False, True])
def test_targets_treat_a_nan_reward_and_an_invalid_row_as_failed(whiten):
  """On the device, before GAE: a row counts when valid > 0 and its reward is finite; the others get reward 0
  (so a NaN reaches no return, advantage or whitening statistic) and no value target."""
  _, mesh, state, _ = ppo_setup()
  cfg = ppo.ValueConfig(gamma=1.0, lam=0.5, whiten=whiten)
  out = jax.jit(ppo.make_targets(models.Decoder(CFG), cfg))(
      state, put_batch(rollout([0.5, np.nan, 2.0], [1.0, 1.0, 0.0]), mesh))
  np.testing.assert_array_equal(out.value_mask, [[0, 0, 0, 0, 1, 1, 1, 0], [0] * 8, [0] * 8])
  for name in ("advantages", "returns", "old_values", "old_logp"):
    assert np.isfinite(np.asarray(getattr(out, name))).all(), name
  # V = 0: the one counted row's returns are its reward discounted by gamma * lam; the others' rewards are 0.
  np.testing.assert_allclose(out.returns[0], [0, 0, 0, 0, 0.125, 0.25, 0.5, 0], rtol=1e-6)
  np.testing.assert_array_equal(out.returns[1:], 0.0)
  np.testing.assert_array_equal(out.advantages[1:], 0.0)
  if not whiten:
    np.testing.assert_allclose(out.advantages[0], [0, 0, 0, 0, 0.125, 0.25, 0.5, 0], rtol=1e-6)
  else:  # whitened over row 0's three tokens only
    a = np.array([0.125, 0.25, 0.5])
    np.testing.assert_allclose(out.advantages[0, 4:7], (a - a.mean()) / np.sqrt(a.var() + 1e-8), rtol=1e-5)


def completion_logp(model, params, batch):
  logits, _ = model.apply({"params": params}, batch.tokens, batch.positions)
  targets = np.concatenate([batch.tokens[:, 1:], np.zeros_like(batch.tokens[:, :1])], axis=1)
  return np.asarray((token_log_probs(logits, targets) * batch.policy_mask).sum(axis=1))


def test_ppo_steps_fit_the_value_head_and_raise_the_rewarded_completion():
  optimizer, mesh, state, shardings = ppo_setup(lr=3e-3)
  model = models.Decoder(CFG)
  host = rollout([1.0, -1.0], [True, True])
  cfg = ppo.ValueConfig(value_clip=10.0)  # no clip: the value loss can keep falling on a fixed batch
  batch = jax.jit(ppo.make_targets(model, cfg))(state, put_batch(host, mesh))
  assert batch.old_logp is not None  # so the "policy" term's ratio is to the params that made the targets
  before = completion_logp(model, state["params"], host)
  objective = make_objective(None, Parts(model, loss_cfg=PolicyLossConfig(), value_cfg=cfg), ["policy", "value"])
  step = make_train_step(objective, optimizer, shardings, mesh)
  value_losses = []
  for _ in range(4):
    state, metrics = step(state, batch, {})
    assert bool(metrics["finite"])
    value_losses.append(float(metrics["value_loss"]))
  # The first loss is at V = 0: 0.5 * mean(returns^2) over the 6 active tokens.
  returns = np.asarray(batch.returns)
  assert value_losses[0] == pytest.approx(0.5 * np.sum(returns ** 2) / 6, rel=1e-5)
  assert value_losses[3] < value_losses[2] < value_losses[1] < value_losses[0]
  assert np.abs(np.asarray(state["value_head"]["kernel"])).sum() > 0
  after = completion_logp(model, state["params"], host)
  assert after[0] > before[0] and after[1] < before[1]


def ppo_config(sft_workdir, *overrides):
  config = load_config(os.path.join(ROOT, "configs", "grpo.py") + ":runlocal")
  apply_overrides(config, [("init_checkpoint", sft_workdir), ("rl.advantage", "ppo"), ("rl.group_size", "1"),
                           ("rl.rewards", "length,correctness"), ("rl.reward_weights", "1.0,1.0"),
                           ("rl.prompts_per_step", "4"), ("train.steps", "3"), ("train.eval_every", "0"),
                           ("eval.num_examples", "4"), ("optim.lr", "1e-3"), ("optim.warmup_steps", "0"),
                           *overrides])
  return config


def test_ppo_run_from_an_sft_checkpoint_logs_value_metrics_and_resumes_with_its_head(sft_workdir, tmp_path,
                                                                                      length_reward):
  workdir = str(tmp_path / "ppo")
  first = train.run(ppo_config(sft_workdir), workdir, should_stop=lambda step: step == 2)
  assert first["finished"] is False and first["step"] == 2
  summary = train.run(ppo_config(sft_workdir), workdir)
  assert summary["finished"] and summary["step"] == 3 and "eval/accuracy" in summary
  rows = [r for r in read_metrics(os.path.join(workdir, "metrics.jsonl")) if "train/loss" in r]
  assert [r["step"] for r in rows] == [1, 2, 3]
  for row in rows:
    for key in ("train/value_loss", "train/value_clip_frac", "train/values_mean"):
      assert np.isfinite(row[key]), key
  # The SFT checkpoint has no head, so it starts at zero (V = 0); it has learnt by step 2, and the resumed
  # step 3 reads it back from the checkpoint (a fresh head would give exactly 0 again).
  assert rows[0]["train/values_mean"] == 0.0
  assert rows[1]["train/values_mean"] != 0.0 and rows[2]["train/values_mean"] != 0.0
  assert rows[0]["train/value_loss"] > 0.0


@pytest.mark.parametrize("advantage", ["grpo", "rloo"])
def test_group_size_one_is_still_an_error_for_group_advantages(advantage, tmp_path):
  config = load_config(os.path.join(ROOT, "configs", "grpo.py") + ":runlocal")
  apply_overrides(config, [("rl.group_size", "1"), ("rl.advantage", advantage)])
  with pytest.raises(ConfigError, match="at least 2 completions"):
    train.run(config, str(tmp_path / "w"))
