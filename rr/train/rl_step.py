"""One step of the GRPO family, end to end: sample groups of completions, score them, choose the groups to
train on, turn rewards into advantages, and take `rl.epochs` optimiser steps on that batch.

The run loop (`rr.train.grpo`) and `benchmarks/grpo_step.py` call the same `RLStep`, so the benchmark times
the trainer's real path. Prompts and sampling keys are pure functions of (seed, step, round), so a resumed
run draws the same rollouts.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rr.data import decode_completion, format_prompt
from rr.losses import PolicyLossConfig, policy_loss, sequence_kl, sequence_log_probs, token_entropy
from rr.models import Decoder
from rr.rewards import Combination, compute_advantages, reward_metrics, reward_name, score_rewards
from rr.rewards.base import RewardFailure
from rr.sampler import Sampler, Sampling
from rr.train import ppo
from rr.train.groups import Collected, Groups, collect_groups, keep_groups
from rr.train.rollout import policy_forward, rollout_batch
from rr.train.step import make_train_step, put_batch

def make_grpo_step(model: Decoder, optimizer: optax.GradientTransformation, loss_cfg: PolicyLossConfig,
                   shardings: dict, mesh: jax.sharding.Mesh, reuse_old_logp: bool,
                   value_cfg: ppo.ValueConfig | None = None,
                   shared_prompt: tuple[int, int] | None = None, temperature: float = 1.0) -> Callable:
  """`step(state, batch, ref_params) -> (state, metrics)`: the policy objective below through the one step
  factory (rr.train.step.make_train_step), which also skips a non-finite update.

  With one epoch per batch the old log-probs are the current ones under stop-gradient (ratio 1); with
  more, they come in the batch (`old_logp`), recorded before the first epoch. A step whose loss or
  gradient is not finite leaves params and optimiser state unchanged and reports which term it was.
  With `value_cfg` (PPO) the state has a value head on the policy's trunk, trained by the same loss; the
  batch then brings `ppo.make_targets`'s per-token advantages, returns and old values.
  `shared_prompt = (G, P)` computes each group's prompt once (`rr.train.rollout.policy_forward`).
  `temperature` is the sampler's (`rl.temperature`): the policy and the reference are scored with logits / T,
  so the ratio, the KL and the entropy are those of the distribution the rollouts were drawn from (TRL, verl).
  """

  def loss_fn(trained, batch, ref_params):
    params = trained["params"] if value_cfg else trained
    logits_BxTxV, hidden_BxTxD = policy_forward(model, params, batch["tokens"], batch["positions"],
                                                shared_prompt)
    logp_BxT = sequence_log_probs(logits_BxTxV, batch["tokens"], temperature)
    old_logp_BxT = batch["old_logp"] if reuse_old_logp else jax.lax.stop_gradient(logp_BxT)
    ref_logp_BxT = None
    if loss_cfg.kl_beta > 0:
      ref_logits, _ = policy_forward(model, ref_params, batch["tokens"], batch["positions"], shared_prompt)
      ref_logp_BxT = jax.lax.stop_gradient(sequence_log_probs(ref_logits, batch["tokens"], temperature))
    entropy_BxT = token_entropy(logits_BxTxV, temperature)
    loss, metrics = policy_loss(logp_BxT, old_logp_BxT, batch["advantages"], batch["mask"], loss_cfg,
                                ref_logp_BxT=ref_logp_BxT, entropy_BxT=entropy_BxT, has_eos_B=batch["has_eos"])
    active_BxT = batch["mask"] > 0  # where(), not a product: padding columns may hold anything
    gap_BxT = jnp.where(active_BxT, jnp.abs(jax.lax.stop_gradient(logp_BxT) - batch["sampler_logp"]), 0.0)
    metrics = {**metrics, "entropy": jnp.sum(jnp.where(active_BxT, jax.lax.stop_gradient(entropy_BxT), 0.0))
               / jnp.maximum(batch["mask"].sum(), 1.0),
               "logprob_gap_mean": gap_BxT.sum() / jnp.maximum(batch["mask"].sum(), 1.0),
               "logprob_gap_max": gap_BxT.max()}
    if value_cfg is not None:
      scaled_value_loss, value_metrics = ppo.value_terms(trained["value_head"], hidden_BxTxD, batch, value_cfg)
      loss, metrics = loss + scaled_value_loss, {**metrics, **value_metrics}
    return loss, metrics

  ref_sh = shardings["params"] if loss_cfg.kl_beta > 0 else None  # no reference is passed when beta = 0
  return make_train_step(loss_fn, optimizer, shardings, mesh, frozen_shardings=ref_sh, takes_frozen=True)


@dataclasses.dataclass
class StepResult:
  metrics: dict  # TRL-named "train/..." scalars
  finite: bool  # False: the update was skipped (state unchanged) because `bad_terms` went non-finite
  bad_terms: list
  failures: list  # RewardFailure rows of this step
  all_groups_equal: bool  # no learning signal in any sampled group


class RLStep:
  """`step(state, step_index, ref_params) -> (state, StepResult)` for one RL step.

  `prompts[i]` (token ids) and `examples[i]` describe train question i; each round samples
  `rl.prompts_per_step` of them without replacement, `rl.group_size` completions each.
  """

  def __init__(self, rl, model: Decoder, optimizer: optax.GradientTransformation, loss_cfg: PolicyLossConfig,
               shardings: dict, mesh: jax.sharding.Mesh, tokenizer, prompts: Sequence[Sequence[int]],
               examples: Sequence, reward_fns: Sequence, reward_weights: np.ndarray, width: int, seed: int,
               reward_combine: Combination | None = None):
    self.rl, self.mesh, self.tokenizer, self.width, self.seed = rl, mesh, tokenizer, width, seed
    self.prompts, self.examples = list(prompts), list(examples)
    self.reward_fns, self.reward_weights = list(reward_fns), np.asarray(reward_weights, np.float32)
    # How reward columns become total_N (config.rl.reward_combine, rr.train.grpo.build_combination).
    self.reward_combine = (Combination("weighted_sum", self.reward_weights) if reward_combine is None
                           else reward_combine)
    names = [reward_name(f) for f in self.reward_fns]
    self.correctness_column = names.index("correctness") if "correctness" in names else None
    self.sampler = Sampler(model.cfg, eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id, mesh=mesh)
    self.strategy = Sampling(temperature=rl.temperature, top_k=rl.top_k, top_p=rl.top_p)
    self.value_cfg = ppo.value_config(rl) if rl.advantage == "ppo" else None
    shared_prompt = (rl.group_size, width - rl.max_new_tokens)  # the rollout_batch layout
    self.train_step = make_grpo_step(model, optimizer, loss_cfg, shardings, mesh,
                                     reuse_old_logp=rl.epochs > 1 or self.value_cfg is not None,
                                     value_cfg=self.value_cfg, shared_prompt=shared_prompt,
                                     temperature=rl.temperature)
    self.ppo_targets = (ppo.make_targets(model, self.value_cfg, shared_prompt, temperature=rl.temperature)
                        if self.value_cfg is not None else None)
    # Old log-probs for epochs > 1, at the sampling temperature like the loss's.
    self.old_logp_fn = jax.jit(lambda params, batch: sequence_log_probs(
        policy_forward(model, params, batch["tokens"], batch["positions"], shared_prompt)[0], batch["tokens"],
        rl.temperature))
    # kl_mode "reward": beta * sum_t k_t per completion comes off its reward before the advantages.
    self.kl_reward_beta = loss_cfg.kl_beta if loss_cfg.kl_mode == "reward" else 0.0
    self.sequence_kl_fn = jax.jit(lambda params, ref_params, batch: sequence_kl(
        self.old_logp_fn(params, batch), self.old_logp_fn(ref_params, batch), batch["mask"], loss_cfg.kl_estimator))
    filtering = rl.dynamic_sampling or rl.pass_rate_min > 0.0 or rl.pass_rate_max < 1.0
    self.max_rounds = rl.max_sampling_rounds if filtering else 1
    self.keep: Callable[[Groups], np.ndarray] = lambda groups: keep_groups(
        groups, drop_equal=rl.dynamic_sampling, pass_rate_min=rl.pass_rate_min, pass_rate_max=rl.pass_rate_max)

  def sample_round(self, params, step: int, round_: int) -> tuple[Groups, list[RewardFailure]]:
    rl = self.rl
    rng = np.random.default_rng([self.seed, step, round_])
    picked = rng.choice(len(self.prompts), size=rl.prompts_per_step, replace=False)
    key = jax.random.fold_in(jax.random.fold_in(jax.random.key(self.seed), step), round_)
    out = self.sampler(params, [self.prompts[i] for i in picked], max_new_tokens=rl.max_new_tokens,
                       strategy=self.strategy, rng=key, num_samples=rl.group_size)
    examples = [self.examples[i] for i in picked for _ in range(rl.group_size)]
    completions = [decode_completion(self.tokenizer, row) for row in out.tokens]
    texts = [format_prompt(self.examples[i].question, self.tokenizer) for i in picked]  # a chat template
    prompt_texts = [text for text in texts for _ in range(rl.group_size)]  # renders once per prompt, not per row
    mask_NxC = np.arange(out.tokens.shape[1])[None, :] < out.lengths[:, None]
    rewards_NxK, valid_N, failures = score_rewards(self.reward_fns, prompt_texts, completions, examples,
                                                   tokens_NxC=out.tokens, mask_NxC=mask_NxC)
    total_N = np.asarray(self.reward_combine(rewards_NxK, valid_N))
    passed_N = (rewards_NxK[:, self.correctness_column] >= 1.0 if self.correctness_column is not None
                else np.zeros(len(completions), bool))
    groups = Groups(rl.group_size, [self.prompts[i] for i in picked], examples, out.tokens, out.lengths,
                    out.logprobs, rewards_NxK, valid_N, total_N, passed_N)
    return groups, failures

  def __call__(self, state, step: int, ref_params=None) -> tuple[dict, StepResult]:
    rl = self.rl
    t0 = time.time()
    failures: list[RewardFailure] = []
    timings = {"sampling": 0.0, "scoring": 0.0}

    def sample_round(round_: int) -> Groups:
      # Sampling and scoring alternate across rounds; time each on its own.
      ts = time.time()
      groups, round_failures = self.sample_round(state["params"], step, round_)
      failures.extend(round_failures)
      timings["sampling"] += time.time() - ts
      return groups

    collected: Collected = collect_groups(sample_round, rl.prompts_per_step, self.max_rounds, self.keep)
    t1 = time.time()
    chosen = collected.batch
    batch = rollout_batch(chosen.prompts, rl.group_size, chosen.tokens, chosen.lengths, chosen.logprobs,
                          self.tokenizer.eos_id, self.tokenizer.pad_id, self.width)
    total_N, kl_penalty_N = chosen.total_N, None
    if self.kl_reward_beta:
      kl_penalty_N = self.kl_reward_beta * np.asarray(self.sequence_kl_fn(
          state["params"], ref_params, put_batch({k: batch[k] for k in ("tokens", "positions", "mask")}, self.mesh)))
      total_N = total_N - kl_penalty_N
    if self.value_cfg is None:
      opts = {"scale": rl.advantage_scale} if rl.advantage == "grpo" else {}
      batch["advantages"] = np.asarray(compute_advantages(rl.advantage, total_N, rl.group_size,
                                                          valid_B=chosen.valid_N, **opts), np.float32)
    else:
      batch.update(ppo.row_rewards(total_N, chosen.valid_N))
    t2 = time.time()
    device_batch = put_batch(batch, self.mesh)
    if self.value_cfg is not None:  # PPO: advantages come from the value head, before any update
      device_batch.update(self.ppo_targets(state, device_batch))
    elif rl.epochs > 1:
      device_batch["old_logp"] = self.old_logp_fn(state["params"], device_batch)
    for _ in range(rl.epochs):
      state, metrics = self.train_step(state, device_batch, ref_params)
    metrics = jax.device_get(metrics)
    t3 = time.time()
    sampled = collected.sampled
    group_std = sampled.total_N.reshape(-1, rl.group_size).std(axis=1)
    valid = sampled.valid_N
    lengths = chosen.lengths.astype(np.float64)
    train = {"train/loss": float(metrics["loss"]), "train/pg_loss": float(metrics["pg_loss"]),
             "train/grad_norm": float(metrics["grad_norm"]), "train/entropy": float(metrics["entropy"]),
             "train/clip_ratio": float(metrics["clip_ratio"]),
             "train/clip_frac_low": float(metrics["clip_frac_low"]),
             "train/clip_frac_high": float(metrics["clip_frac_high"]),
             "train/logprob_gap_mean": float(metrics["logprob_gap_mean"]),
             "train/logprob_gap_max": float(metrics["logprob_gap_max"]),
             "train/reward": float(sampled.total_N[valid].mean()) if valid.any() else float("nan"),
             "train/reward_std": float(sampled.total_N[valid].std()) if valid.any() else float("nan"),
             "train/frac_reward_zero_std": float(np.mean(group_std == 0)),
             "train/sampling_rounds": float(collected.rounds),
             "train/frac_groups_kept": collected.kept / sampled.num_groups,
             "train/completions/mean_length": float(lengths.mean()),
             "train/completions/min_length": float(lengths.min()),
             "train/completions/max_length": float(lengths.max()),
             "train/completions/clipped_ratio": float(np.mean(~batch["has_eos"])),
             "train/tokens_per_s": float(sampled.lengths.sum() / max(t3 - t0, 1e-9)),
             "train/seconds_sampling": timings["sampling"],
             "train/seconds_scoring": (t1 - t0 - timings["sampling"]) + (t2 - t1),
             "train/seconds_training": t3 - t2,
             **{f"train/{k}": v for k, v in reward_metrics(self.reward_fns, sampled.rewards_NxK, valid).items()}}
    if "kl" in metrics:
      train["train/kl"] = float(metrics["kl"])
    if kl_penalty_N is not None:  # the reward the advantages saw is train/reward minus this
      train["train/kl_reward_penalty"] = float(kl_penalty_N[chosen.valid_N].mean()) if chosen.valid_N.any() else 0.0
    for key in ("value_loss", "value_clip_frac", "values_mean"):  # PPO only
      if key in metrics:
        train[f"train/{key}"] = float(metrics[key])
    bad = [k for k, v in metrics["finite_terms"].items() if not v]
    # Equal rewards in every group leave group advantages at 0, but not PPO's (the value head still learns).
    flat = self.value_cfg is None and bool(np.all(group_std == 0))
    return state, StepResult(train, bool(metrics["finite"]), bad, failures, flat)
