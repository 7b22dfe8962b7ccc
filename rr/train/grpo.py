"""The GRPO family: sample G completions per prompt, score them, turn rewards into advantages, and take
`rl.epochs` clipped policy-gradient steps on each batch of rollouts (`config.trainer = "grpo"`).

Phases as in the SFT loop: inputs, mesh, model and optimiser, restore (or start from
`config.init_checkpoint`), evaluation before training, the loop, evaluation after. Rollout prompts and
sampling keys are pure functions of (seed, step), so a resumed run draws the same rollouts.
"""

from __future__ import annotations

import sys
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

from rr import sharding
from rr.config import ConfigError
from rr.data import decode_completion, encode_prompts, format_prompt
from rr.eval import evaluate_accuracy
from rr.losses import PolicyLossConfig, policy_loss, sequence_log_probs, token_entropy
from rr.models import Decoder
from rr.rewards import (GroupSizeError, check_group_size, compute_advantages, correctness, format_reward,
                        reward_metrics, score_rewards, step_correctness, weighted_sum)
from rr.sampler import Sampler, Sampling
from rr.train.inputs import load_inputs
from rr.train.interrupt import StopRequest
from rr.train.metrics import MetricWriter
from rr.train.optimizer import learning_rate_schedule, make_optimizer
from rr.train.rollout import rollout_batch
from rr.train.setup import build_mesh, build_model_config, count_params
from rr.train.state import open_run, starting_state
from rr.train.step import put_batch

REWARDS = {"correctness": correctness, "format": format_reward, "step_correctness": step_correctness}


def build_rewards(rl) -> tuple[list, np.ndarray]:
  names = [n.strip() for n in rl.rewards.split(",") if n.strip()]
  unknown = [n for n in names if n not in REWARDS]
  if not names or unknown:
    raise ConfigError(f"config.rl.rewards={rl.rewards!r}: unknown {unknown or 'empty list'}; "
                      f"choose from {sorted(REWARDS)}")
  try:
    weights = np.array([float(w) for w in rl.reward_weights.split(",")], np.float32)
  except ValueError:
    raise ConfigError(f"config.rl.reward_weights={rl.reward_weights!r} must be comma-separated numbers") from None
  if len(weights) != len(names):
    raise ConfigError(f"config.rl.reward_weights has {len(weights)} weights for {len(names)} rewards "
                      f"({', '.join(names)}); give one weight per reward")
  return [REWARDS[n]() for n in names], weights


def policy_loss_config(rl) -> PolicyLossConfig:
  try:
    return PolicyLossConfig(eps_low=rl.eps_low, eps_high=rl.eps_high, ratio_level=rl.ratio_level,
                            clip_mode=rl.clip_mode, dual_clip_c=rl.dual_clip_c, aggregation=rl.aggregation,
                            max_completion_len=rl.max_new_tokens, kl_beta=rl.kl_beta,
                            kl_estimator=rl.kl_estimator, entropy_coef=rl.entropy_coef,
                            mask_truncated=rl.mask_truncated)
  except ValueError as e:
    raise ConfigError(f"config.rl: {e}") from e


def make_grpo_step(model: Decoder, optimizer: optax.GradientTransformation, loss_cfg: PolicyLossConfig,
                   shardings: dict, mesh: jax.sharding.Mesh, reuse_old_logp: bool) -> Callable:
  """`step(state, batch, ref_params) -> (state, metrics)`, jitted with shardings.

  With one epoch per batch the old log-probs are the current ones under stop-gradient (ratio 1); with
  more, they come in the batch (`old_logp`), recorded before the first epoch. A step whose loss or
  gradient is not finite leaves params and optimiser state unchanged and reports which term it was.
  """

  def loss_fn(params, batch, ref_params):
    logits_BxTxV, _ = model.apply({"params": params}, batch["tokens"], batch["positions"])
    logp_BxT = sequence_log_probs(logits_BxTxV, batch["tokens"])
    old_logp_BxT = batch["old_logp"] if reuse_old_logp else jax.lax.stop_gradient(logp_BxT)
    ref_logp_BxT = None
    if loss_cfg.kl_beta > 0:
      ref_logits, _ = model.apply({"params": ref_params}, batch["tokens"], batch["positions"])
      ref_logp_BxT = jax.lax.stop_gradient(sequence_log_probs(ref_logits, batch["tokens"]))
    entropy_BxT = token_entropy(logits_BxTxV)
    loss, metrics = policy_loss(logp_BxT, old_logp_BxT, batch["advantages"], batch["mask"], loss_cfg,
                                ref_logp_BxT=ref_logp_BxT, entropy_BxT=entropy_BxT, has_eos_B=batch["has_eos"])
    gap_BxT = jnp.abs(jax.lax.stop_gradient(logp_BxT) - batch["sampler_logp"]) * batch["mask"]
    metrics = {**metrics, "entropy": jnp.sum(jax.lax.stop_gradient(entropy_BxT) * batch["mask"])
               / jnp.maximum(batch["mask"].sum(), 1.0),
               "logprob_gap_mean": gap_BxT.sum() / jnp.maximum(batch["mask"].sum(), 1.0),
               "logprob_gap_max": gap_BxT.max()}
    return loss, metrics

  def step(state, batch, ref_params):
    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"], batch, ref_params)
    grad_norm = optax.tree.norm(grads)
    finite = {name: jnp.isfinite(value) for name, value in
              (("loss", loss), ("grad_norm", grad_norm), *((k, v) for k, v in metrics.items()))}
    ok = jnp.all(jnp.stack(list(finite.values())))
    updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
    new = {"step": state["step"] + 1, "params": optax.apply_updates(state["params"], updates),
           "opt_state": opt_state}
    state = jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, state)
    return state, {**metrics, "loss": loss, "grad_norm": grad_norm, "finite": ok,
                   "finite_terms": finite}

  batch_sh = sharding.batch_sharding(mesh)
  ref_sh = shardings["params"] if loss_cfg.kl_beta > 0 else None  # no reference is passed when beta = 0
  return jax.jit(step, in_shardings=(shardings, batch_sh, ref_sh),
                 out_shardings=(shardings, sharding.replicated(mesh)), donate_argnums=0)


def run(config, workdir: str, should_stop: Callable[[int], bool] | None = None) -> dict:
  """Reinforces the student on the configured task and writes reports into `workdir`; returns the summary."""
  start = time.time()
  rl = config.rl
  # ---------------------------------------------------------------- inputs
  inputs = load_inputs(config)
  tokenizer = inputs.tokenizer
  reward_fns, reward_weights = build_rewards(rl)
  loss_cfg = policy_loss_config(rl)
  batch_size = rl.prompts_per_step * rl.group_size
  try:
    check_group_size(batch_size, rl.group_size)
  except GroupSizeError as e:
    raise ConfigError(str(e)) from e
  if rl.group_size < 2:
    raise ConfigError(f"config.rl.group_size={rl.group_size}: group advantages need at least 2 completions")
  prompts = encode_prompts(tokenizer, [e.question for e in inputs.train])
  prompt_width = -(-max(len(p) for p in prompts) // 8) * 8
  width = prompt_width + rl.max_new_tokens
  eval_examples = inputs.test[:config.eval.num_examples]
  model_cfg = build_model_config(config, tokenizer.vocab_size)
  # ---------------------------------------------------------------- mesh
  mesh = build_mesh(config, batch_size, "config.rl.prompts_per_step * config.rl.group_size")
  # ---------------------------------------------------------------- model and optimiser
  model = Decoder(model_cfg)
  total_steps = config.train.steps
  optimizer = make_optimizer(config.optim, total_steps * rl.epochs)
  schedule = learning_rate_schedule(config.optim, total_steps * rl.epochs)
  # ---------------------------------------------------------------- restore
  checkpoints, record, state, shardings, resumed = open_run(workdir, config, model_cfg, optimizer, mesh,
                                                           tokenizer.vocab_size)
  ref_params = None  # the frozen reference: the starting params, rebuilt the same way on resume
  if loss_cfg.kl_beta > 0:
    ref_params = starting_state(model_cfg, optimizer, mesh, config.seed, record, config.init_checkpoint)[0]["params"]
  # ---------------------------------------------------------------- loop
  writer = MetricWriter(workdir, enabled=jax.process_index() == 0)
  sampler = Sampler(model_cfg, eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id, mesh=mesh)
  strategy = Sampling(temperature=rl.temperature, top_k=rl.top_k, top_p=rl.top_p)
  train_step = make_grpo_step(model, optimizer, loss_cfg, shardings, mesh, reuse_old_logp=rl.epochs > 1)
  old_logp_fn = jax.jit(lambda params, batch: sequence_log_probs(
      model.apply({"params": params}, batch["tokens"], batch["positions"])[0], batch["tokens"]))

  def evaluate(params) -> dict:
    if not eval_examples:
      return {}
    return evaluate_accuracy(sampler, params, tokenizer, eval_examples, max_new_tokens=config.eval.max_new_tokens,
                             batch_size=config.eval.batch_size)

  step = int(jax.device_get(state["step"])) // rl.epochs
  first_eval = {}
  if resumed is None:
    first_eval = evaluate(state["params"])
    if first_eval:
      first_eval["eval/accuracy_initial"] = first_eval["eval/accuracy"]
      writer.write(step, first_eval)
  warned_flat = False
  last_train, last_eval, interrupted = {}, {}, False
  with StopRequest() as stop, tqdm(total=total_steps, initial=step, desc="grpo", dynamic_ncols=True,
                                   file=sys.stderr, mininterval=2.0) as bar:
    while step < total_steps:
      t0 = time.time()
      rng = np.random.default_rng([config.seed, step])
      picked = rng.choice(len(inputs.train), size=rl.prompts_per_step, replace=False)
      step_prompts = [prompts[i] for i in picked]
      examples = [inputs.train[i] for i in picked for _ in range(rl.group_size)]
      out = sampler(state["params"], step_prompts, max_new_tokens=rl.max_new_tokens, strategy=strategy,
                    rng=jax.random.fold_in(jax.random.key(config.seed), step), num_samples=rl.group_size)
      t1 = time.time()
      completions = [decode_completion(tokenizer, row) for row in out.tokens]
      prompt_texts = [format_prompt(e.question) for e in examples]
      rewards_NxK, valid_N, failures = score_rewards(reward_fns, prompt_texts, completions, examples)
      for failure in failures[:5]:
        bar.write(f"rr: reward {failure.reward} failed on row {failure.row}: {failure.error}")
      total_N = np.asarray(weighted_sum(rewards_NxK, reward_weights))
      opts = {"scale": rl.advantage_scale} if rl.advantage == "grpo" else {}
      advantages_N = np.asarray(compute_advantages(rl.advantage, total_N, rl.group_size, valid_B=valid_N, **opts))
      batch = rollout_batch(step_prompts, rl.group_size, out.tokens, out.lengths, out.model_logprobs,
                            tokenizer.eos_id, tokenizer.pad_id, width)
      batch["advantages"] = advantages_N.astype(np.float32)
      group_std = total_N.reshape(-1, rl.group_size).std(axis=1)
      if not warned_flat and np.all(group_std == 0):
        bar.write(f"rr: step {step}: every group had equal rewards, so no learning signal (zero advantages); "
                  "this is normal early on and warned once")
        warned_flat = True
      t2 = time.time()
      device_batch = put_batch(batch, mesh)
      if rl.epochs > 1:
        device_batch["old_logp"] = old_logp_fn(state["params"], device_batch)
      for _ in range(rl.epochs):
        state, metrics = train_step(state, device_batch, ref_params)
      metrics = jax.device_get(metrics)
      t3 = time.time()
      step += 1
      bar.update(1)
      if not metrics["finite"]:
        bad = [k for k, v in metrics["finite_terms"].items() if not v]
        bar.write(f"rr: step {step}: non-finite {', '.join(bad)}; the update was skipped and the run stops with "
                  f"its last good checkpoint in {checkpoints.directory}")
        interrupted = True
        break
      lengths = out.lengths.astype(np.float64)
      last_train = {"train/loss": float(metrics["loss"]), "train/pg_loss": float(metrics["pg_loss"]),
                    "train/grad_norm": float(metrics["grad_norm"]), "train/lr": float(schedule(step * rl.epochs - 1)),
                    "train/entropy": float(metrics["entropy"]), "train/clip_ratio": float(metrics["clip_ratio"]),
                    "train/clip_frac_low": float(metrics["clip_frac_low"]),
                    "train/clip_frac_high": float(metrics["clip_frac_high"]),
                    "train/logprob_gap_mean": float(metrics["logprob_gap_mean"]),
                    "train/logprob_gap_max": float(metrics["logprob_gap_max"]),
                    "train/reward": float(total_N[valid_N].mean()) if valid_N.any() else float("nan"),
                    "train/reward_std": float(total_N[valid_N].std()) if valid_N.any() else float("nan"),
                    "train/frac_reward_zero_std": float(np.mean(group_std == 0)),
                    "train/completions/mean_length": float(lengths.mean()),
                    "train/completions/min_length": float(lengths.min()),
                    "train/completions/max_length": float(lengths.max()),
                    "train/completions/clipped_ratio": float(np.mean(~batch["has_eos"])),
                    "train/tokens_per_s": float(lengths.sum() / max(t3 - t0, 1e-9)),
                    "train/seconds_sampling": t1 - t0, "train/seconds_scoring": t2 - t1,
                    "train/seconds_training": t3 - t2,
                    **{f"train/{k}": v for k, v in reward_metrics(reward_fns, rewards_NxK, valid_N).items()}}
      if "kl" in metrics:
        last_train["train/kl"] = float(metrics["kl"])
      if step % config.train.log_every == 0 or step == total_steps:
        writer.write(step, last_train)
        bar.set_postfix(reward=f"{last_train['train/reward']:.3f}")
      if config.train.eval_every and step % config.train.eval_every == 0 and step < total_steps:
        last_eval = evaluate(state["params"])
        writer.write(step, last_eval)
        bar.write(f"step {step}: " + ", ".join(f"{k}={v:.4g}" for k, v in last_eval.items()))
      if step % config.train.checkpoint_every == 0:
        checkpoints.save(int(jax.device_get(state["step"])), state, record)
      if stop.requested or (should_stop is not None and should_stop(step)):
        interrupted = step < total_steps
        break
  # ---------------------------------------------------------------- final evaluation and reports
  # A non-finite step was skipped inside the jitted step, so this state is the last good one.
  checkpoints.save(int(jax.device_get(state["step"])), state, record)
  checkpoints.close()
  if not interrupted:
    last_eval = evaluate(state["params"])
    if last_eval:
      writer.write(step, last_eval)
  summary = {"step": step, "finished": not interrupted, "wall_seconds": time.time() - start,
             "num_params": count_params(state["params"]), **last_train, **last_eval}
  if "eval/accuracy_initial" in first_eval:
    summary["eval/accuracy_initial"] = first_eval["eval/accuracy_initial"]
  writer.write_summary(summary)
  writer.plot_curves(("train/reward", "train/loss", "eval/accuracy"))
  writer.close()
  return summary

