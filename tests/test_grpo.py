"""The GRPO loop: rollout layout, the step's direction, an end-to-end run from an SFT checkpoint, resume."""

import os

import jax
import numpy as np
import pytest

from rr import models, sharding, train
from rr.config import ConfigError, apply_overrides, base_config, load_config, read_run_config
from rr.losses import PolicyLossConfig, token_log_probs
from rr.data import CharTokenizer
from rr.tasks import Example
from rr.train import grpo
from rr.train.batch import put_batch, rollout_batch
from rr.train.metrics import read_metrics
from rr.train.objectives import Parts, make_objective
from rr.train.optimizer import learning_rate_schedule
from rr.train.optimizer import make_optimizer
from rr.train.state import init_train_state
from rr.train.step import make_train_step

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_rollout_batch_places_completions_and_their_logprobs():
  prompts = [[5, 6, 7], [8, 9]]
  tokens = np.array([[11, 1, 0], [12, 13, 14], [1, 0, 0], [15, 16, 0]], np.int32)  # eos = 1, pad = 0
  lengths = np.array([2, 3, 1, 2])
  logp = np.arange(12, dtype=np.float32).reshape(4, 3) / -10
  batch = rollout_batch(prompts, 2, tokens, lengths, logp, eos_id=1, pad_id=0, width=8)
  # Prompts are left-padded to 8 - 3 = 5 columns, so every completion starts at column 5.
  np.testing.assert_array_equal(batch.tokens[1], [0, 0, 5, 6, 7, 12, 13, 14])
  np.testing.assert_array_equal(batch.tokens[3], [0, 0, 0, 8, 9, 15, 16, 0])
  np.testing.assert_array_equal(batch.positions[3], [-1, -1, -1, 0, 1, 2, 3, -1])
  # Row 1: completion tokens sit at 5..7, so their log-probs are read at 4..6.
  np.testing.assert_array_equal(batch.policy_mask[1], [0, 0, 0, 0, 1, 1, 1, 0])
  np.testing.assert_allclose(batch.behaviour_logp[1, 4:7], [-0.3, -0.4, -0.5])
  np.testing.assert_array_equal(batch.policy_mask[2], [0, 0, 0, 0, 1, 0, 0, 0])
  np.testing.assert_array_equal(batch.has_eos, [True, False, True, False])
  np.testing.assert_array_equal(batch.group_ids, [0, 0, 1, 1])
  # Rewards and everything filled on the device are not set here.
  assert batch.rewards is None and batch.advantages is None and batch.old_logp is None
  with pytest.raises(ValueError, match="more than the batch width"):
    rollout_batch(prompts, 2, tokens, lengths, logp, eos_id=1, pad_id=0, width=5)


def completion_logp(model, params, batch):
  logits, _ = model.apply({"params": params}, batch.tokens, batch.positions)
  targets = np.concatenate([batch.tokens[:, 1:], np.zeros_like(batch.tokens[:, :1])], axis=1)
  return np.asarray((token_log_probs(logits, targets) * batch.policy_mask).sum(axis=1))


def policy_step(model, optimizer, shardings, mesh):
  """The GRPO update of the trainer core: the "policy" term alone (no KL, so no frozen model)."""
  return make_train_step(make_objective(None, Parts(model, loss_cfg=PolicyLossConfig()), ["policy"]), optimizer,
                         shardings, mesh)


def test_one_step_raises_the_positive_and_lowers_the_negative_completion():
  cfg = models.model_config("nano", vocab_size=24)
  optim = base_config().optim
  optim.lr, optim.warmup_steps, optim.weight_decay = 1e-2, 0, 0.0
  optimizer = make_optimizer(optim, 10, cfg.param_dtype)
  mesh = sharding.make_mesh()
  state, shardings = init_train_state(cfg, optimizer, mesh, seed=0)
  model = models.Decoder(cfg)
  batch = rollout_batch([[3, 4, 5]], 2, np.array([[7, 8, 1], [9, 10, 1]], np.int32), np.array([3, 3]),
                        np.zeros((2, 3), np.float32), eos_id=1, pad_id=0, width=8)
  batch = batch.replace(advantages=np.array([1.0, -1.0], np.float32))
  before = completion_logp(model, state["params"], batch)
  step = policy_step(model, optimizer, shardings, mesh)  # no old_logp in the batch: sg(logp), ratio 1
  state, metrics = step(state, put_batch(batch, mesh), {})
  after = completion_logp(model, state["params"], batch)
  assert after[0] > before[0] and after[1] < before[1]
  assert bool(metrics["finite"]) and float(metrics["grad_norm"]) > 0
  # mu = 1: ratio 1, so the loss value is -mean(A) = 0 here, while the gradient is not.
  assert abs(float(metrics["loss"])) < 1e-6


def test_non_finite_advantage_skips_the_update_and_names_the_term():
  cfg = models.model_config("nano", vocab_size=24)
  optimizer = make_optimizer(base_config().optim, 10, cfg.param_dtype)
  mesh = sharding.make_mesh()
  state, shardings = init_train_state(cfg, optimizer, mesh, seed=0)
  before = jax.tree.map(np.asarray, state["params"])
  batch = rollout_batch([[3, 4, 5]], 2, np.array([[7, 8, 1], [9, 10, 1]], np.int32), np.array([3, 3]),
                        np.zeros((2, 3), np.float32), eos_id=1, pad_id=0, width=8)
  batch = batch.replace(advantages=np.array([np.nan, 1.0], np.float32))
  step = policy_step(models.Decoder(cfg), optimizer, shardings, mesh)
  state, metrics = step(state, put_batch(batch, mesh), {})
  assert not bool(metrics["finite"])
  bad = {k for k, v in metrics["finite_terms"].items() if not bool(v)}
  assert "loss" in bad and "pg_loss" in bad
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), b), state["params"], before)


def grpo_config(sft_workdir, *overrides):
  config = load_config(os.path.join(ROOT, "configs", "grpo.py") + ":runlocal")
  apply_overrides(config, [("init_checkpoint", sft_workdir), ("rl.rewards", "length,correctness"),
                           ("rl.reward_weights", "1.0,1.0"), ("train.eval_every", "0"),
                           ("eval.num_examples", "4"), ("rl.kl_beta", "0.05"), *overrides])
  return config


@pytest.fixture(scope="module")
def grpo_run(sft_workdir, length_reward, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("grpo"))
  return workdir, train.run(grpo_config(sft_workdir), workdir)


def test_grpo_run_from_an_sft_checkpoint_reports_trl_style_metrics(grpo_run, sft_workdir):
  workdir, summary = grpo_run
  assert summary["finished"] and summary["step"] == 12
  for key in ("eval/accuracy_initial", "eval/accuracy", "train/rewards/length/mean", "train/rewards/correctness/std",
              "train/frac_reward_zero_std", "train/completions/mean_length", "train/completions/max_length",
              "train/clip_ratio/region_mean", "train/clip_ratio/low_mean", "train/clip_ratio/high_mean",
              "train/entropy", "train/kl",
              "train/grad_norm", "train/logprob_gap_max", "train/seconds_sampling", "train/tokens_per_s"):
    assert key in summary, key
  rows = [r for r in read_metrics(os.path.join(workdir, "metrics.jsonl")) if "train/loss" in r]
  assert [r["step"] for r in rows] == list(range(1, 13))
  assert all(r["train/grad_norm"] > 0 for r in rows)
  assert rows[0]["train/kl"] == pytest.approx(0.0, abs=1e-6)  # the reference is the starting policy
  assert rows[-1]["train/kl"] > rows[0]["train/kl"]
  # The trainer's recomputed log-probs are the sampler's (same params, float32).
  assert max(r["train/logprob_gap_max"] for r in rows) < 1e-4
  assert read_run_config(os.path.join(workdir, "config.json")).to_dict() == grpo_config(sft_workdir).to_dict()
  # train/learning_rate is the schedule's value at each logged step (read when logged, not every step).
  schedule = learning_rate_schedule(grpo_config(sft_workdir).optim, 12)
  want_lr = [float(schedule(s - 1)) for s in range(1, 13)]
  assert [r["train/learning_rate"] for r in rows] == pytest.approx(want_lr, rel=1e-6)
  # num_tokens (TRL's): the running count of prompt and completion tokens trained on. Every runlocal question is
  # two 3-digit numbers, so each step adds the same prompt tokens on top of its completions.
  rl = grpo_config(sft_workdir).rl
  rows_per_step = rl.prompts_per_step * rl.group_size
  added = np.diff([0.0] + [r["train/num_tokens"] for r in rows])
  prompt_tokens = added - np.array([r["train/completions/mean_length"] for r in rows]) * rows_per_step
  assert prompt_tokens[0] > 0 and prompt_tokens[0] % rows_per_step == 0
  np.testing.assert_allclose(prompt_tokens, prompt_tokens[0])


def test_reward_std_is_the_mean_of_the_groups_sample_stds():
  """TRL's reward_std: each group's std with ddof 1, then their mean; a failed (invalid) row is left out and a
  group left with one valid reward has no std."""
  total = np.array([1.0, 0.0, 1.0, 0.0, 2.0, 2.0, 2.0, 2.0, np.nan, 3.0, 5.0, 4.0, 7.0, np.nan, np.nan, np.nan])
  valid = ~np.isnan(total)
  # group 0: mean 0.5, squares 4 x 0.25 = 1 over 3 -> sqrt(1/3); group 1: 0; group 2 (3, 5, 4): sqrt(2/2) = 1
  want = (np.sqrt(1 / 3) + 0.0 + 1.0) / 3
  assert grpo.mean_group_std(total, valid, 4) == pytest.approx(want)
  assert np.isnan(grpo.mean_group_std(total[12:], valid[12:], 4))


def test_grpo_resume_draws_the_same_rollouts_and_losses(grpo_run, sft_workdir, tmp_path, length_reward):
  workdir, _ = grpo_run
  resumed = str(tmp_path / "resumed")
  first = train.run(grpo_config(sft_workdir), resumed, should_stop=lambda step: step == 5)
  assert first["finished"] is False
  train.run(grpo_config(sft_workdir), resumed)
  want = {r["step"]: r["train/loss"] for r in read_metrics(os.path.join(workdir, "metrics.jsonl")) if "train/loss" in r}
  got = {r["step"]: r["train/loss"] for r in read_metrics(os.path.join(resumed, "metrics.jsonl")) if "train/loss" in r}
  assert sorted(got) == sorted(want)
  np.testing.assert_allclose([got[s] for s in sorted(got)], [want[s] for s in sorted(want)], rtol=1e-5, atol=1e-7)
  tokens = lambda path: [r["train/num_tokens"] for r in read_metrics(path) if "train/num_tokens" in r]
  assert tokens(os.path.join(resumed, "metrics.jsonl")) == tokens(os.path.join(workdir, "metrics.jsonl"))
  rows = read_metrics(os.path.join(resumed, "metrics.jsonl"))
  assert len({(r["step"], tuple(sorted(r))) for r in rows}) == len(rows)  # one row per (step, keys)


def test_two_epochs_per_batch_record_old_logprobs(sft_workdir, tmp_path, length_reward):
  config = grpo_config(sft_workdir, ("rl.epochs", "2"), ("train.steps", "3"), ("rl.kl_beta", "0.0"))
  summary = train.run(config, str(tmp_path / "mu2"))
  assert summary["finished"] and summary["step"] == 3 and "train/kl" not in summary
  assert os.listdir(tmp_path / "mu2" / "checkpoints") == ["3"]  # loop steps, not optimiser steps (3 * 2)


def test_config_names_build_the_built_in_rewards_with_token_lengths():
  from rr.rewards import score_rewards

  rl = base_config().rl
  rl.rewards, rl.reward_weights = "overlong,calibration,length_penalty", "1,1,1"
  rl.max_new_tokens, rl.overlong_buffer, rl.length_target = 10, 4, 5
  tokenizer = CharTokenizer()
  fns, weights = grpo.build_rewards(rl, tokenizer)
  assert [f.name for f in fns] == ["overlong", "calibration", "length_penalty"]
  np.testing.assert_array_equal(weights, [1, 1, 1])
  example = Example(question="1+2", rationale="1+2+0=03", answer="3")
  text = "<think>x</think>3\nconfidence: 0.8"  # a right answer stated with confidence 0.8
  ids = tokenizer.encode(text) + [tokenizer.eos_id]
  n = len(ids)  # the sampled tokens, eos included: what the length rewards count
  assert n != len(text)  # <think> and </think> are one token each, so lengths really are token counts
  tokens, mask = np.array([ids], np.int32), np.ones((1, n), bool)
  # overlong: soft limit 10 - 4 = 6; n > 10 -> -1. length_penalty: -(n - 5) / 5. calibration (RLCR): 1 - 0.2^2.
  got, valid, _ = score_rewards(fns, ["p"], [text], [example], tokens_NxC=tokens, mask_NxC=mask)
  assert valid.all()
  np.testing.assert_allclose(got[0], [-1.0, 1 - 0.2 ** 2, -(n - 5) / 5], rtol=1e-6)
  overlong = fns[0]
  assert float(overlong(np.zeros((1, 4), np.int32), np.ones((1, 4), bool))[0]) == 0.0  # 4 tokens <= 6
  assert float(overlong(np.zeros((1, 7), np.int32), np.ones((1, 7), bool))[0]) == pytest.approx((6 - 7) / 4)
  rl.overlong_buffer = 0
  with pytest.raises(ConfigError, match="config.rl: overlong_shaping"):
    grpo.build_rewards(rl, tokenizer)


def test_dynamic_sampling_with_no_signal_stops_at_the_round_cap(sft_workdir, tmp_path, capsys):
  # An almost untrained student never answers right, so every group is flat and every round is dropped.
  config = grpo_config(sft_workdir, ("rl.rewards", "correctness"), ("rl.reward_weights", "1.0"),
                       ("rl.dynamic_sampling", "true"), ("rl.max_sampling_rounds", "2"), ("train.steps", "2"),
                       ("rl.kl_beta", "0.0"))
  summary = train.run(config, str(tmp_path / "ds"))
  assert summary["finished"] and summary["train/sampling_rounds"] == 2.0
  assert summary["train/frac_groups_kept"] == 0.0 and summary["train/frac_reward_zero_std"] == 1.0
  captured = capsys.readouterr()
  assert "every group had equal rewards" in captured.out + captured.err


@pytest.mark.parametrize("overrides, message", [
    ([("rl.pass_rate_min", "0.25"), ("rl.rewards", "format"), ("rl.reward_weights", "1")],
     "does not include it; add 'correctness'"),
    ([("rl.pass_rate_min", "0.8"), ("rl.pass_rate_max", "0.2")], "0 <= min <= max <= 1"),
    ([("rl.advantage", "ppo"), ("rl.group_size", "1"), ("rl.dynamic_sampling", "true")],
     "dynamic sampling and the pass-rate filter judge groups"),
    ([("rl.advantage", "ppo"), ("rl.gae_lambda", "1.5")], "gae_gamma and gae_lambda in \\[0, 1\\]"),
    ([("rl.rewards", "correctness,nope")], "unknown \\['nope'\\]"),
    ([("rl.reward_weights", "1.0")], "1 weights for 2 rewards"),
    ([("rl.group_size", "1")], "at least 2 completions"),
    ([("rl.aggregation", "sum")], "config.rl: PolicyLossConfig.aggregation='sum'"),
    ([("rl.kl_mode", "k3")], "config.rl: PolicyLossConfig.kl_mode='k3'"),
])
def test_rl_config_errors_name_the_key(overrides, message, tmp_path):
  config = load_config(os.path.join(ROOT, "configs", "grpo.py") + ":runlocal")
  apply_overrides(config, overrides)
  with pytest.raises(ConfigError, match=message):
    train.run(config, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()
