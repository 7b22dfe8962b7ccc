"""Objectives as sums of small terms: `objective(trainable, batch, frozen, rng) -> (loss, metrics)`.

docs/methods.md has each term's formula. A term is `term(fwd) -> (loss, metrics)`, where `fwd` (Forward) holds
the model outputs the step's terms share, each computed once, on first use, inside the one jitted step: the
policy's logits and hidden states, log-probs and entropies at the sampling temperature, and the log-probs of
a frozen model. Terms are registered by name and built from the config by their factory
`make(config, parts) -> term`, so a new loss term is one decorated factory and one config line:

  @objectives.TERMS.register("length_bonus")
  def length_bonus(config, parts):
    def term(fwd):
      n = fwd.batch.policy_mask.sum()
      return -1e-3 * n, {"length_bonus_tokens": n}
    return term

  --config.train.loss_terms=policy,length_bonus

Every term reports its own metrics, so a loss without `clip_ratio` never breaks the logger (the loop logs
whatever the step returns). The built-ins:
  nll      completion NLL on the demonstration tokens (SFT)
  policy   the clipped surrogate of the GRPO family / PPO (rr.losses.policy_loss), with its diagnostics
  kl       beta * KL(pi || pi_ref) to the frozen reference (rl.kl_beta, rl.kl_mode, rl.kl_estimator)
  entropy  - rl.entropy_coef * token entropy
  value    rl.vf_coef * the clipped value loss of a value head (PPO)
  kd       distill.weight * a divergence to the frozen "teacher"'s next-token distribution (logit KD), or to the
           cached top-k teacher logits the batch carries (distill.logit_cache)
  step_by_step  distill.alpha * answer NLL + (1 - alpha) * rationale NLL, two tasks (distilling step-by-step)
The policy-side terms share one token mask (the sampled tokens, minus truncated rows with rl.mask_truncated)
and one aggregation (rl.aggregation), so their sum equals one aggregated sum of per-token losses.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
from typing import Any, Callable

import jax
import jax.numpy as jnp

from rr.losses import (PolicyLossConfig, aggregate, chunked_completion_nll, completion_nll, distillation_loss,
                       kl_gradient_term, kl_per_token, lm_head_weight, masked_mean, policy_loss, sequence_log_probs,
                       sparse_distillation_loss, token_entropy)
from rr.models import Decoder, merge_adapters, shared_prompt_forward
from rr.registry import Registry, split_names
from rr.train.batch import TrainBatch
from rr.train.state import LORA_BASE, LORA_SCALE

TERMS = Registry("objective term", "config.train.loss_terms")
# Modules that register their terms when imported (term_names imports them)
BUILT_IN_TERM_MODULES = ("rr.train.privileged", "rr.train.guide", "rr.train.prefix_rft", "rr.train.sft_steps")
Term = Callable[["Forward"], tuple[jax.Array, dict[str, jax.Array]]]
Objective = Callable[[Any, TrainBatch, Any, jax.Array], tuple[jax.Array, dict[str, jax.Array]]]


@dataclasses.dataclass(frozen=True)
class Parts:
  """What term factories may read besides the config: the student and the frozen models' architectures."""
  model: Decoder
  frozen_models: dict[str, Decoder] = dataclasses.field(default_factory=dict)  # "reference", later "teacher"
  temperature: float = 1.0  # the sampler's (rl.temperature): rollouts are scored at the T they were drawn at
  shared_prompt: tuple[int, int] | None = None  # (G, P) of the rollout layout, or None for a plain forward
  loss_cfg: PolicyLossConfig = PolicyLossConfig()
  value_cfg: Any = None  # rr.train.ppo.ValueConfig when the state has a value head
  vocab_size: int | None = None  # the tokenizer's ids: embedding rows past them (padded tables) are never targets
  completion_width: int | None = None  # C of a rollout-layout batch: completions fill its last C columns


class Forward:
  """The model outputs of one step's batch, each computed at most once per trace (cached properties)."""

  def __init__(self, parts: Parts, trainable, batch: TrainBatch, frozen: dict | None, rng: jax.Array | None,
               totals: dict | None = None):
    self.parts, self.trainable, self.batch, self.frozen, self.rng = parts, trainable, batch, frozen or {}, rng
    self.totals = totals  # the whole batch's counts when `batch` is one micro-batch of it (batch_totals)

  def share(self, kind: str, local_count: jax.Array) -> jax.Array:
    """The factor that turns a mean over this batch's `kind` items (batch_totals' keys) into its part of the mean
    over the whole batch: 1 for a whole batch, local count / whole count for a micro-batch, so the micro-batches'
    losses (and gradients) add up to the whole batch's."""
    if self.totals is None:
      return jnp.ones((), jnp.float32)
    return local_count / jnp.maximum(self.totals[kind], 1.0)

  @property
  def policy_share(self) -> jax.Array:
    """share() for the policy-side aggregation (rl.aggregation): by tokens for token-mean, by rows otherwise.
    Under token-mean a batch with Guide's rows (guided_mask) divides by the policy's and the guided tokens
    together, so the policy-side terms and the "guide" term make one mean over every trained token."""
    if self.parts.loss_cfg.aggregation == "token-mean":
      local = self.policy_mask.sum()
      if self.totals is None:
        if self.batch.guided_mask is None:
          return jnp.ones((), jnp.float32)
        return local / jnp.maximum(local + self.guided_mask.sum(), 1.0)
      return local / jnp.maximum(self.totals["policy"] + self.totals.get("guided", 0.0), 1.0)
    if self.totals is None:
      return jnp.ones((), jnp.float32)
    return self.share("rows", jnp.float32(self.batch.tokens.shape[0]))

  @functools.cached_property
  def params(self):
    """The policy's params: the trainable ones, or, for LoRA adapters, the frozen base the step passes among the
    untrained trees (rr.train.state.untrained) merged with them in the compute dtype, once per trace."""
    if "lora" in self.trainable:
      return merge_adapters(self.frozen[LORA_BASE], self.trainable["lora"], self.frozen[LORA_SCALE],
                            self.parts.model.cfg.compute_dtype)
    return self.trainable["params"] if "value_head" in self.trainable else self.trainable

  @functools.cached_property
  def outputs(self) -> tuple[jax.Array, jax.Array]:
    """(logits [B, T, V], hidden [B, T, D]) of the trained policy."""
    return shared_prompt_forward(self.parts.model, self.params, self.batch.tokens, self.batch.positions,
                                 self.parts.shared_prompt, self.batch.segment_ids)

  @property
  def logits(self) -> jax.Array:
    return self.outputs[0]

  @functools.cached_property
  def logp(self) -> jax.Array:
    """log pi(tokens[t + 1]) at the sampling temperature, [B, T]."""
    return sequence_log_probs(self.logits, self.batch.tokens, self.parts.temperature)

  @functools.cached_property
  def entropy(self) -> jax.Array:
    return token_entropy(self.logits, self.parts.temperature)

  @functools.cached_property
  def old_logp(self) -> jax.Array:
    """The sampling policy's log-probs: recorded before the first epoch, or sg(logp) (ratio 1) when mu = 1."""
    return self.batch.old_logp if self.batch.old_logp is not None else jax.lax.stop_gradient(self.logp)

  @functools.cached_property
  def policy_mask(self) -> jax.Array:
    """The sampled tokens the policy-side terms train on: truncated rows dropped with rl.mask_truncated."""
    mask = self.batch.policy_mask.astype(jnp.float32)
    if self.parts.loss_cfg.mask_truncated:
      mask = mask * self.batch.has_eos.astype(jnp.float32)[:, None]
    return mask

  @functools.cached_property
  def guided_mask(self) -> jax.Array:
    """Guide's hinted-rollout tokens the "guide" term trains on: truncated rows dropped with rl.mask_truncated, as
    from policy_mask."""
    mask = self.batch.guided_mask.astype(jnp.float32)
    if self.parts.loss_cfg.mask_truncated:
      mask = mask * self.batch.has_eos.astype(jnp.float32)[:, None]
    return mask

  def frozen_logp(self, name: str) -> jax.Array:
    """sg(log-probs) of the frozen model `name` (a reference policy, a teacher) on the batch's tokens."""
    return _frozen_logp(self, name)

  def frozen_logits(self, name: str) -> jax.Array:
    """sg(logits) [B, T, V'] of the frozen model `name` (its own table size V'), computed once per step."""
    return _frozen_logits(self, name)

  def aggregate(self, loss_BxT: jax.Array) -> jax.Array:
    cfg = self.parts.loss_cfg
    return aggregate(loss_BxT, self.policy_mask, cfg.aggregation, cfg.max_completion_len) * self.policy_share


def batch_totals(batch: TrainBatch, parts: Parts) -> dict[str, jax.Array]:
  """The counts the terms' means divide by, over a whole batch, for its micro-batches (Forward.share): rows,
  policy tokens (as Forward.policy_mask), guided tokens (as Forward.guided_mask), demonstration tokens, the
  step-by-step tasks' and the value tokens, and Prefix-RFT's prefix tokens (every one its term may select, not
  the ones it selects: that choice depends on the params)."""
  f32 = lambda x: x.astype(jnp.float32)
  totals = {"rows": jnp.float32(batch.tokens.shape[0])}
  if batch.policy_mask is not None:
    totals["policy"] = Forward(parts, None, batch, None, None).policy_mask.sum()  # no forward: masks only
  if batch.demo_mask is not None:
    totals["demo"] = f32(batch.demo_mask).sum()
    if batch.rationale_mask is not None:
      totals["rationale"] = f32(batch.rationale_mask).sum()
      totals["answer"] = (f32(batch.demo_mask) * (1.0 - f32(batch.rationale_mask))).sum()
  if batch.value_mask is not None:
    totals["value"] = f32(batch.value_mask).sum()
  if batch.guided_mask is not None:  # the "guide" term's tokens, truncated rows dropped as from the policy's
    totals["guided"] = Forward(parts, None, batch, None, None).guided_mask.sum()
  if batch.prefix_mask is not None:  # the "prefix" term's tokens: Prefix-RFT's rule, kept beside its term
    from rr.train.prefix_rft import trained_prefix_mask
    totals["prefix"] = trained_prefix_mask(batch, parts).sum()
  return totals


def _frozen_logits(fwd: Forward, name: str) -> jax.Array:
  cache = fwd.__dict__.setdefault("_frozen_logits", {})
  if name not in cache:
    if name not in fwd.frozen:
      raise ValueError(f"objective term needs the frozen model {name!r}, but the step got {sorted(fwd.frozen)}")
    logits, _ = shared_prompt_forward(fwd.parts.frozen_models[name], fwd.frozen[name], fwd.batch.tokens,
                                      fwd.batch.positions, fwd.parts.shared_prompt, fwd.batch.segment_ids)
    cache[name] = jax.lax.stop_gradient(logits)
  return cache[name]


def _frozen_logp(fwd: Forward, name: str) -> jax.Array:
  cache = fwd.__dict__.setdefault("_frozen_logp", {})
  if name not in cache:
    cache[name] = sequence_log_probs(_frozen_logits(fwd, name), fwd.batch.tokens, fwd.parts.temperature)
  return cache[name]


def _on(mask_BxT: jax.Array, x_BxT: jax.Array) -> jax.Array:
  """x with every masked position set to 0 before any exp or sum (see rr.losses.policy)."""
  return jnp.where(mask_BxT > 0, x_BxT.astype(jnp.float32), 0.0)


# ------------------------------------------------------------------------------------------ the built-in terms

@TERMS.register("nll")
def nll_term(config, parts: Parts) -> Term:
  """Completion-only NLL of the demonstration tokens, token-mean over the batch (docs/methods.md, "SFT loss").
  With train.loss_chunk_tokens > 0 it is computed from the final hidden states a chunk of tokens at a time
  (rr.losses.chunked_completion_nll), so the full float32 logits are never made (unless another term reads them)."""
  chunk = 0 if config is None else config.train.loss_chunk_tokens

  def nll(fwd: Forward):
    if chunk:
      return chunked_completion_nll(fwd.outputs[1], lm_head_weight(fwd.params), fwd.batch.tokens,
                                    fwd.batch.demo_mask, chunk)
    return completion_nll(fwd.logits, fwd.batch.tokens, fwd.batch.demo_mask)

  def term(fwd: Forward):
    loss, count = nll(fwd)
    return loss * fwd.share("demo", count), {"target_tokens": count}

  return term


@TERMS.register("policy")
def policy_term(config, parts: Parts) -> Term:
  """The clipped surrogate (docs/methods.md, "Policy loss"), plus the diagnostics every RL run logs: entropy of
  the sampled tokens and how far the recomputed log-probs are from the sampler's."""
  cfg = dataclasses.replace(parts.loss_cfg, kl_beta=0.0, entropy_coef=0.0, mask_truncated=False)

  def term(fwd: Forward):
    loss, metrics = policy_loss(fwd.logp, fwd.old_logp, fwd.batch.advantages, fwd.policy_mask, cfg)
    loss = loss * fwd.policy_share
    sampled = fwd.batch.policy_mask
    count = jnp.maximum(sampled.sum(), 1.0)
    gap_BxT = jnp.where(sampled > 0, jnp.abs(jax.lax.stop_gradient(fwd.logp) - fwd.batch.behaviour_logp), 0.0)
    return loss, {**metrics, "entropy": masked_mean(jax.lax.stop_gradient(fwd.entropy), sampled),
                  "logprob_gap_mean": gap_BxT.sum() / count, "logprob_gap_max": gap_BxT.max()}

  return term


@TERMS.register("kl")
def kl_term(config, parts: Parts) -> Term:
  """beta * KL(pi || pi_ref) to the frozen "reference", aggregated like the surrogate (docs/methods.md, "KL").

  kl_mode "gradient": value the estimator's, gradient the sequence KL's score-function gradient; "loss": the
  estimator differentiated (TRL); "reward": no loss here (the penalty is in the rewards before the advantages,
  rr.train.advantages), only the logged `kl`.
  """
  cfg = parts.loss_cfg

  def term(fwd: Forward):
    mask = fwd.policy_mask
    logp, ref_logp = _on(mask, fwd.logp), _on(mask, fwd.frozen_logp("reference"))
    kl_BxT = _on(mask, kl_per_token(logp, ref_logp, cfg.kl_estimator))
    metrics = {"kl": masked_mean(kl_BxT, mask)}
    if cfg.kl_mode == "reward":
      return jnp.zeros((), jnp.float32), metrics
    if cfg.kl_mode == "gradient":
      kl_BxT = jax.lax.stop_gradient(kl_BxT) + kl_gradient_term(logp, _on(mask, fwd.old_logp), ref_logp, mask)
    return cfg.kl_beta * fwd.aggregate(kl_BxT), metrics

  return term


@TERMS.register("entropy")
def entropy_term(config, parts: Parts) -> Term:
  """- rl.entropy_coef * H(pi) per sampled token, aggregated like the surrogate (an exploration bonus)."""
  coef = parts.loss_cfg.entropy_coef

  def term(fwd: Forward):
    return -coef * fwd.aggregate(_on(fwd.policy_mask, fwd.entropy)), {}

  return term


@TERMS.register("value")
def value_term(config, parts: Parts) -> Term:
  """rl.vf_coef * the clipped value loss of the value head on the policy's trunk (PPO; rr.train.ppo)."""
  from rr.train import ppo  # the value head's pieces live with PPO's targets

  if parts.value_cfg is None:
    raise ValueError("objective term 'value' needs a value head: use an advantage estimator that trains one "
                     "(config.rl.advantage='ppo')")

  def term(fwd: Forward):
    loss, metrics = ppo.value_terms(fwd.trainable["value_head"], fwd.outputs[1], fwd.batch, parts.value_cfg)
    return loss * fwd.share("value", fwd.batch.value_mask.astype(jnp.float32).sum()), metrics

  return term


@TERMS.register("kd")
def kd_term(config, parts: Parts) -> Term:
  """config.distill.weight * the divergence between the frozen "teacher"'s and the student's next-token
  distributions (rr.losses.distillation_loss), token mean over the demonstration tokens (the policy's sampled
  tokens for a rollout batch): logit KD, the teacher's logits computed in the same jitted step, or, when the
  batch carries cached top-k teacher logits (distill.logit_cache), read from them with no teacher forward."""
  d = config.distill

  def term(fwd: Forward):
    batch = fwd.batch
    mask, kind = (batch.demo_mask, "demo") if batch.demo_mask is not None else (fwd.policy_mask, "policy")
    if batch.teacher_topk_ids is not None:
      loss = sparse_distillation_loss(fwd.logits, batch.teacher_topk_logits, batch.teacher_topk_ids, mask,
                                      d.divergence, beta=d.beta, temperature=d.temperature)
    else:
      loss = distillation_loss(fwd.logits, fwd.frozen_logits("teacher"), mask, d.divergence, beta=d.beta,
                               temperature=d.temperature, top_k=d.top_k, vocab_size=parts.vocab_size)
    share = fwd.share(kind, mask.astype(jnp.float32).sum())
    return d.weight * loss * share, {"kd": jax.lax.stop_gradient(loss)}

  return term


@TERMS.register("step_by_step")
def step_by_step_term(config, parts: Parts) -> Term:
  """Distilling step-by-step (docs/methods.md): alpha * CE(answer | "predict: " x) + (1 - alpha) *
  CE(rationale | "explain: " x), alpha = config.distill.alpha, each CE the token mean over its own task's demo
  tokens, so neither task's weight depends on how long its targets are. The batch's rationale_mask marks the
  explain rows' tokens (rr.data.SFTBatches with step_by_step); the rest of demo_mask is the predict rows'."""
  alpha = config.distill.alpha

  def term(fwd: Forward):
    batch = fwd.batch
    if batch.rationale_mask is None or batch.demo_mask is None:
      raise ValueError("objective term 'step_by_step' needs a batch of predict and explain rows (demo_mask and "
                       "rationale_mask): the SFT trainer builds them when the term is in config.train.loss_terms")
    rationale_mask = batch.rationale_mask.astype(jnp.float32)
    answer_mask = batch.demo_mask.astype(jnp.float32) * (1.0 - rationale_mask)
    answer_nll, answer_tokens = completion_nll(fwd.logits, batch.tokens, answer_mask)
    rationale_nll, rationale_tokens = completion_nll(fwd.logits, batch.tokens, rationale_mask)
    loss = (alpha * answer_nll * fwd.share("answer", answer_tokens)
            + (1.0 - alpha) * rationale_nll * fwd.share("rationale", rationale_tokens))
    return loss, {"answer_nll": jax.lax.stop_gradient(answer_nll), "answer_tokens": answer_tokens,
                  "rationale_nll": jax.lax.stop_gradient(rationale_nll), "rationale_tokens": rationale_tokens}

  return term


# ------------------------------------------------------------------------------------------ composing them

def default_terms(config, trainer: str, value_head: bool) -> list[str]:
  """The trainer's own composition when config.train.loss_terms is "": SFT is the NLL; RL is the surrogate,
  plus the KL when rl.kl_beta > 0, the entropy bonus when rl.entropy_coef != 0, the value loss with a value head,
  Guide's importance-weighted term on hinted rollouts (rl.guide) and Prefix-RFT's term on demonstration prefixes
  (rl.prefix_rollouts > 0)."""
  if trainer == "sft":
    return ["nll"]
  rl = config.rl
  return (["policy"] + (["kl"] if rl.kl_beta > 0 else []) + (["entropy"] if rl.entropy_coef else [])
          + (["value"] if value_head else []) + (["guide"] if rl.guide else [])
          + (["prefix"] if rl.prefix_rollouts else []))


def term_names(config, trainer: str, value_head: bool = False) -> list[str]:
  """config.train.loss_terms as a list (checked against the registry), or the trainer's default."""
  names = split_names(config.train.loss_terms) or default_terms(config, trainer, value_head)
  for module in BUILT_IN_TERM_MODULES:  # terms that live beside the trainer pieces they need
    importlib.import_module(module)
  for name in names:
    TERMS.get(name, where=f"config.train.loss_terms={config.train.loss_terms!r}")
  return names


def make_objective(config, parts: Parts, names: list[str]) -> Objective:
  """The sum of the named terms, each built once from the config; their metrics merge into one dict."""
  terms = [(name, TERMS.get(name)(config, parts)) for name in names]

  def objective(trainable, batch: TrainBatch, frozen, rng, totals: dict | None = None):
    fwd = Forward(parts, trainable, batch, frozen, rng, totals)
    total, metrics = jnp.zeros((), jnp.float32), {}
    for name, term in terms:
      loss, term_metrics = term(fwd)
      total = total + loss
      clash = set(term_metrics) & set(metrics)
      if clash:
        raise ValueError(f"objective term {name!r} reports metrics {sorted(clash)} that another term reports too")
      metrics.update(term_metrics)
    return total, metrics

  objective.totals = functools.partial(batch_totals, parts=parts)  # what a micro-batched step divides by
  return objective
