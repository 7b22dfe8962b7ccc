"""bfloat16 params with float32 master weights: the update by hand, shardings, and bf16 SFT and GRPO runs that
checkpoint and resume."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp

from rr import models, sharding, train
from rr.config import apply_overrides, base_config, load_config
from rr.train.metrics import read_metrics
from rr.train.optimizer import make_optimizer
from rr.train.precision import MasterState, with_float32_master
from rr.train.state import init_train_state

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BF16 = [("model.param_dtype", "bfloat16"), ("model.dtype", "bfloat16")]


def test_master_keeps_the_updates_that_bfloat16_rounds_away():
  # SGD(1) with gradient -g adds g per step. bf16 spacing at 1.0 is 2^-7, so 1 + 1e-4 rounds back to 1.
  opt = with_float32_master(optax.sgd(1.0))
  grad = jnp.array([-1e-4], jnp.bfloat16)
  g = -float(grad[0])  # 1.0013580322265625e-4, the bf16 value of 1e-4
  param = plain = jnp.array([1.0], jnp.bfloat16)
  state = opt.init(param)
  update = jax.jit(opt.update)
  for _ in range(100):
    updates, state = update(grad, state, param)
    param = optax.apply_updates(param, updates)
    plain = optax.apply_updates(plain, -grad)
  assert float(plain[0]) == 1.0  # plain bf16 never moves
  assert state.master.dtype == jnp.float32 and updates.dtype == jnp.float32
  np.testing.assert_allclose(float(state.master[0]), 1.0 + 100 * g, rtol=1e-6)  # 1.0100136
  # bf16(1.0100136): the neighbours are 1.0078125 and 1.015625, and it is 1.28 spacings above 1.
  assert param.dtype == jnp.bfloat16 and float(param[0]) == 1.0078125


def test_master_restarts_from_params_replaced_from_outside_and_float32_params_are_untouched():
  opt = with_float32_master(optax.sgd(0.5))
  params = {"w": jnp.array([1.0, 2.0], jnp.bfloat16), "v": jnp.array([3.0], jnp.float32)}
  state = opt.init(params)
  # Params loaded over a fresh state (e.g. an init checkpoint): the w[1] master no longer rounds to 4.0.
  loaded = {"w": jnp.array([1.0, 4.0], jnp.bfloat16), "v": jnp.array([5.0], jnp.float32)}
  grads = {"w": jnp.array([2.0, 2.0], jnp.bfloat16), "v": jnp.array([2.0], jnp.float32)}
  updates, state = opt.update(grads, state, loaded)
  new = optax.apply_updates(loaded, updates)
  np.testing.assert_array_equal(np.asarray(state.master["w"]), [0.0, 3.0])  # 1 - 0.5 * 2 and 4 - 0.5 * 2
  np.testing.assert_array_equal(np.asarray(new["w"], np.float32), [0.0, 3.0])
  np.testing.assert_array_equal(updates["v"], [-1.0])  # the inner update itself
  assert float(new["v"][0]) == float(state.master["v"][0]) == 4.0


def test_make_optimizer_wraps_only_low_precision_params_and_the_master_shares_their_shardings():
  optim = base_config().optim
  assert not isinstance(make_optimizer(optim, 10, "float32").init({"w": jnp.zeros(2)}), MasterState)
  cfg = models.model_config("nano", vocab_size=24, param_dtype="bfloat16", dtype="bfloat16")
  optimizer = make_optimizer(optim, 10, cfg.param_dtype)
  state, shardings = init_train_state(cfg, optimizer, sharding.make_mesh(), seed=0, value_head=True)
  opt_state, opt_shardings = state["opt_state"], shardings["opt_state"]
  assert isinstance(opt_state, MasterState)
  params = {"params": state["params"], "value_head": state["value_head"]}
  jax.tree.map(lambda m, p: np.testing.assert_array_equal(np.asarray(m), np.asarray(p, np.float32)),
               opt_state.master, params)
  assert {x.dtype for x in jax.tree.leaves(state["params"])} == {jnp.dtype(jnp.bfloat16)}
  assert {x.dtype for x in jax.tree.leaves(opt_state)} - {jnp.dtype(jnp.int32)} == {jnp.dtype(jnp.float32)}
  # The master (and AdamW's moments) take the sharding of the param they track.
  assert opt_shardings.master["params"] == shardings["params"]
  assert opt_shardings.master["params"]["embed"]["embedding"].spec == jax.sharding.PartitionSpec("tensor", "fsdp")
  mu = opt_shardings.inner[1][0].mu  # chain(clip, adamw): adamw = chain(scale_by_adam, ...)
  assert mu["params"] == shardings["params"]


def _restore_raw(workdir: str, step: int):
  return ocp.StandardCheckpointer().restore(os.path.join(workdir, "checkpoints", str(step), "state"))


def _run(spec: str, workdir: str, overrides, should_stop=None):
  config = load_config(os.path.join(ROOT, "configs", spec))
  apply_overrides(config, [*BF16, ("train.eval_every", "0"), ("eval.num_examples", "0"), *overrides])
  return train.run(config, workdir, should_stop=should_stop)


def test_bf16_sft_resumes_and_grpo_ppo_starts_from_it(tmp_path, length_reward):
  sft_dir = str(tmp_path / "sft")
  sft = [("train.steps", "6"), ("train.log_every", "1"), ("train.checkpoint_every", "100")]
  assert not _run("sft.py:runlocal", sft_dir, sft, should_stop=lambda step: step == 3)["finished"]
  summary = _run("sft.py:runlocal", sft_dir, sft)  # resumes at 3
  assert summary["finished"] and summary["step"] == 6
  rows = [r for r in read_metrics(os.path.join(sft_dir, "metrics.jsonl")) if "train/loss" in r]
  assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
  loss = [r["train/loss"] for r in rows]
  assert np.all(np.isfinite(loss)) and loss[-1] < loss[0] - 0.05, loss
  saved = _restore_raw(sft_dir, 6)
  embed = np.asarray(saved["params"]["embed"]["embedding"])
  master = saved["opt_state"]["master"]["embed"]["embedding"]
  assert embed.dtype == jnp.bfloat16 and np.asarray(master).dtype == np.float32
  np.testing.assert_array_equal(np.asarray(master).astype(jnp.bfloat16), embed)  # params = rounded master
  # The resumed run is the uninterrupted one: batches are a function of (seed, step) and the checkpoint
  # holds everything the update reads (bf16 params, float32 master, AdamW moments, step), so on one CPU
  # process the same jitted step replays the same arithmetic. Losses (logged float32) and the float32
  # master must agree to float32 rounding (rtol 1e-6); a resume that dropped the master or the moments
  # moves the master by ~lr = 1e-3 per step (3e-3 after 3 steps, measured), far above that.
  straight_dir = str(tmp_path / "sft_straight")
  assert _run("sft.py:runlocal", straight_dir, sft)["finished"]
  straight = [r["train/loss"] for r in read_metrics(os.path.join(straight_dir, "metrics.jsonl")) if "train/loss" in r]
  straight_saved = _restore_raw(straight_dir, 6)
  np.testing.assert_allclose(loss, straight, rtol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7),
               saved["opt_state"]["master"], straight_saved["opt_state"]["master"])
  # bf16 params are the rounded master: equal up to one bf16 spacing (2^-7 relative) where a master sits on a
  # rounding boundary.
  jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(b, np.float32),
                                                       rtol=2 ** -7), saved["params"], straight_saved["params"])

  # PPO in the GRPO trainer: the float32 value head rides in the same master state as the bf16 policy.
  grpo_dir = str(tmp_path / "grpo")
  rl = [("init_checkpoint", sft_dir), ("rl.rewards", "length"), ("rl.reward_weights", "1.0"),
        ("rl.advantage", "ppo"), ("rl.max_new_tokens", "8"), ("train.steps", "2")]
  summary = _run("grpo.py:runlocal", grpo_dir, rl)
  assert summary["finished"] and summary["step"] == 2
  rows = [r for r in read_metrics(os.path.join(grpo_dir, "metrics.jsonl")) if "train/loss" in r]
  assert [r["step"] for r in rows] == [1, 2]
  assert all(np.isfinite(r["train/loss"]) and r["train/grad_norm"] > 0 for r in rows)
  assert rows[0]["train/values_mean"] == 0.0  # a fresh value head reads 0
  # The sampler (bf16 KV cache) and the trainer read the same bf16 params: log-probs agree to bf16 noise.
  assert max(r["train/logprob_gap_max"] for r in rows) < 0.1
  # RL started from the SFT params, and the master weights carried its small steps: params moved a little.
  saved = _restore_raw(grpo_dir, 2)
  # Step 1 has lr 0 (warm-up); step 2 lifts the float32 value head towards the positive returns (lengths).
  assert saved["value_head"]["bias"].dtype == np.float32 and float(saved["value_head"]["bias"][0]) > 0
  np.testing.assert_array_equal(saved["opt_state"]["master"]["value_head"]["bias"], saved["value_head"]["bias"])
  moved = np.abs(np.asarray(saved["params"]["embed"]["embedding"], np.float32) - embed.astype(np.float32))
  assert 0 < moved.max() < 0.01 and moved.mean() < 0.1 * np.abs(embed.astype(np.float32)).mean()
  # The run restores its own bf16 + master + value-head state (a rerun finds it finished).
  assert _run("grpo.py:runlocal", grpo_dir, rl)["step"] == 2
