"""One clipped policy-gradient loss whose options cover GRPO, Dr.GRPO, DAPO, GSPO, GPPO and PPO.

The math is docs/methods.md, "Policy loss". Every algorithm is a `PolicyLossConfig`, not a copy of the loss, so
a fix to masking or aggregation reaches them all. Inputs are per-token log-probs of the sampled completion
tokens (`rr.losses.token_log_probs`); nothing here sees a model.

GSPO: we use the GSPO-token form, rho_{i,t} = sg(s_i) * exp(logp_t - sg(logp_t)), with
s_i = exp(sum_t m (logp - old) / sum_t m). Its value is the sequence ratio s_i on every token (so clipping
acts per sequence) and its gradient reaches each token as s_i * grad logp_t. Under `seq-mean-token-mean`
this is exactly GSPO's sequence-level gradient; under `token-mean` long sequences weigh more, as in
GSPO-token.

Masked positions (padding, truncated rows) never reach an exponential or a sum: every input is replaced by
0 there with `jnp.where` first, so an overflow at a padding column (e.g. k3 with a huge log-ratio) cannot
turn the loss or its gradient into NaN (a product `inf * 0` would, and so would the backward of a `where`
placed only after the `exp`).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from rr.losses.sft import scale_logits

RATIO_LEVELS = ("token", "sequence")
CLIP_MODES = ("clip", "gppo")
AGGREGATIONS = ("seq-mean-token-mean", "token-mean", "seq-mean-token-sum-norm")
KL_ESTIMATORS = ("k1", "k2", "k3")
KL_MODES = ("gradient", "loss", "reward")


@dataclasses.dataclass(frozen=True)
class PolicyLossConfig:
  """Options of the policy loss; defaults are GRPO with the symmetric PPO clip and no KL.

  DAPO: eps_high=0.28, aggregation="token-mean", mask_truncated=True. Dr.GRPO: aggregation=
  "seq-mean-token-sum-norm" (with "drgrpo" advantages). GSPO: ratio_level="sequence" (small eps, e.g.
  3e-4/4e-4). GPPO: clip_mode="gppo". `max_completion_len` is Dr.GRPO's constant; None means the mask width.
  `kl_mode` says how beta*KL(pi || pi_ref) reaches the gradient: "gradient" (default) uses the score-function
  gradient of the sequence KL (`kl_gradient_term`, 2506.09477); "loss" differentiates the per-token
  `kl_estimator` itself, as TRL does, which is not the KL's gradient (kept for comparison); "reward" adds no
  term here: the trainer subtracts beta * sum_t k_t from each completion's reward before the advantages
  (`sequence_kl`, PPO's and OpenRLHF's form). The loss value, and the logged `kl`, are the `kl_estimator`'s
  in the first two modes; in "reward" mode `kl` is logged and the loss carries no KL.
  """
  eps_low: float = 0.2
  eps_high: float = 0.2
  ratio_level: str = "token"
  clip_mode: str = "clip"
  dual_clip_c: float = 0.0
  aggregation: str = "seq-mean-token-mean"
  max_completion_len: int | None = None
  kl_beta: float = 0.0
  kl_estimator: str = "k3"
  kl_mode: str = "gradient"
  entropy_coef: float = 0.0
  mask_truncated: bool = False

  def __post_init__(self):
    for field, value, allowed in (("ratio_level", self.ratio_level, RATIO_LEVELS),
                                  ("clip_mode", self.clip_mode, CLIP_MODES),
                                  ("aggregation", self.aggregation, AGGREGATIONS),
                                  ("kl_estimator", self.kl_estimator, KL_ESTIMATORS),
                                  ("kl_mode", self.kl_mode, KL_MODES)):
      if value not in allowed:
        raise ValueError(f"PolicyLossConfig.{field}={value!r}; expected one of {allowed}")
    if self.dual_clip_c and self.dual_clip_c <= 1.0:
      raise ValueError(f"PolicyLossConfig.dual_clip_c={self.dual_clip_c}; use 0 (off) or a value > 1, e.g. 3")
    if self.eps_low < 0 or self.eps_high < 0:
      raise ValueError(f"PolicyLossConfig eps_low={self.eps_low}, eps_high={self.eps_high}; must be >= 0")


def token_entropy(logits_BxTxV: jax.Array, temperature: float = 1.0) -> jax.Array:
  """Entropy of the next-token distribution (at `temperature`) at each position, in float32."""
  logits = scale_logits(logits_BxTxV, temperature)
  log_z_BxT = jax.nn.logsumexp(logits, axis=-1)
  p_BxTxV = jax.nn.softmax(logits, axis=-1)
  return log_z_BxT - jnp.sum(p_BxTxV * logits, axis=-1)


def kl_per_token(logp_BxT: jax.Array, ref_logp_BxT: jax.Array, estimator: str) -> jax.Array:
  """Per-token estimate of KL(pi_theta || pi_ref) from samples of pi_theta (Schulman's k1/k2/k3).

  These estimate the KL's value; their derivatives are not the KL's gradient (`kl_gradient_term`).
  """
  if estimator == "k1":
    return logp_BxT - ref_logp_BxT
  if estimator == "k2":
    return 0.5 * jnp.square(logp_BxT - ref_logp_BxT)
  if estimator == "k3":
    log_r = ref_logp_BxT - logp_BxT
    return jnp.exp(log_r) - log_r - 1.0
  raise ValueError(f"kl_estimator={estimator!r}; expected one of {KL_ESTIMATORS}")


def reward_to_go(x_BxT: jax.Array, mask_BxT: jax.Array) -> jax.Array:
  """sum_{t' >= t} m_t' x_t' along each row (0 at masked positions of x)."""
  x_BxT = jnp.where(mask_BxT > 0, x_BxT, 0.0)
  return jnp.flip(jnp.cumsum(jnp.flip(x_BxT, -1), axis=-1), -1)


def kl_gradient_term(logp_BxT: jax.Array, old_logp_BxT: jax.Array, ref_logp_BxT: jax.Array,
                     mask_BxT: jax.Array) -> jax.Array:
  """Per-token term whose gradient is the score-function gradient of the sequence KL (2506.09477).

  For y ~ pi, grad KL(pi || pi_ref) = E[sum_t grad log pi(y_t | y_<t) * R_t] with R_t = sum_{t' >= t}
  (log pi(y_t') - log pi_ref(y_t')): "k1 in the reward" with reward-to-go (the terms t' < t have zero
  mean and are dropped, the "+1" of differentiating log pi(y) too). The term is
  sg(rho_t) * sg(R_t) * (logp_t - sg(logp_t)): value 0, gradient rho_t * R_t * grad logp_t. With mu > 1
  the samples come from pi_old and the token ratio rho_t = exp(logp_t - old_t) reweights them (unclipped:
  it corrects the distribution, it does not limit the step); like PPO's surrogate it ignores the change in
  the prefix distribution, so it is exact at mu = 1 (rho = 1) and for single-token completions.
  Zero at masked positions.
  """
  active = mask_BxT > 0
  logp_BxT = jnp.where(active, logp_BxT, 0.0)
  log_ratio_BxT = jax.lax.stop_gradient(logp_BxT - jnp.where(active, ref_logp_BxT, 0.0))
  rtg_BxT = reward_to_go(log_ratio_BxT, mask_BxT)
  rho_BxT = jnp.exp(jax.lax.stop_gradient(logp_BxT - jnp.where(active, old_logp_BxT, 0.0)))
  term_BxT = rho_BxT * rtg_BxT * (logp_BxT - jax.lax.stop_gradient(logp_BxT))
  return jnp.where(active, term_BxT, 0.0)


def sequence_kl(logp_BxT: jax.Array, ref_logp_BxT: jax.Array, mask_BxT: jax.Array, estimator: str) -> jax.Array:
  """sum_t m_t k_t per sequence [B]: the KL penalty `kl_mode="reward"` subtracts (times beta) from each
  completion's reward. With k1 this is "k1 in the reward", whose policy gradient is the sequence KL's
  (2506.09477, 2510.01555); masked positions are zeroed before the estimator's exp."""
  active = mask_BxT > 0
  kl_BxT = kl_per_token(jnp.where(active, logp_BxT, 0.0), jnp.where(active, ref_logp_BxT, 0.0), estimator)
  return jnp.where(active, kl_BxT, 0.0).sum(-1)


def masked_mean(x_BxT: jax.Array, mask_BxT: jax.Array) -> jax.Array:
  return jnp.sum(jnp.where(mask_BxT > 0, x_BxT * mask_BxT, 0.0)) / jnp.maximum(jnp.sum(mask_BxT), 1.0)


def aggregate(loss_BxT: jax.Array, mask_BxT: jax.Array, aggregation: str,
              max_completion_len: int | None = None) -> jax.Array:
  """Reduce per-token losses to a scalar; the choice decides how much each token and each sequence weighs.

  Masked positions are dropped with `where`, so a non-finite value there cannot leak into the sum.
  """
  masked_BxT = jnp.where(mask_BxT > 0, loss_BxT * mask_BxT, 0.0)
  if aggregation == "seq-mean-token-mean":
    per_seq_B = masked_BxT.sum(-1) / jnp.maximum(mask_BxT.sum(-1), 1.0)
    return per_seq_B.mean()
  if aggregation == "token-mean":
    return masked_BxT.sum() / jnp.maximum(mask_BxT.sum(), 1.0)
  if aggregation == "seq-mean-token-sum-norm":
    batch, width = mask_BxT.shape
    length = width if max_completion_len is None else max_completion_len
    return masked_BxT.sum() / (batch * length)
  raise ValueError(f"aggregation={aggregation!r}; expected one of {AGGREGATIONS}")


def _ratio(logp_BxT, old_logp_BxT, mask_BxT, ratio_level):
  """Importance ratio per token: token-level (GRPO/PPO) or GSPO-token (sequence value, per-token gradient)."""
  log_ratio_BxT = logp_BxT - old_logp_BxT
  if ratio_level == "token":
    return jnp.exp(log_ratio_BxT)
  seq_log_ratio_B = (log_ratio_BxT * mask_BxT).sum(-1) / jnp.maximum(mask_BxT.sum(-1), 1.0)
  seq_ratio_Bx1 = jax.lax.stop_gradient(jnp.exp(seq_log_ratio_B))[:, None]
  return seq_ratio_Bx1 * jnp.exp(logp_BxT - jax.lax.stop_gradient(logp_BxT))


def _clipped_ratio(rho_BxT, logp_BxT, eps_low, eps_high, clip_mode):
  """clip(rho); under GPPO the forward value is the same but d/d logp keeps the (1 +- eps) slope.

  GPPO's d/sg(d) is written exp(logp - sg(logp)): the same value (1) and gradient (d log rho = d logp at
  both ratio levels) without dividing by a ratio that may underflow to 0.
  """
  if clip_mode == "clip":
    return jnp.clip(rho_BxT, 1.0 - eps_low, 1.0 + eps_high)
  unit_BxT = jnp.exp(logp_BxT - jax.lax.stop_gradient(logp_BxT))
  return jnp.where(rho_BxT < 1.0 - eps_low, (1.0 - eps_low) * unit_BxT,
                   jnp.where(rho_BxT > 1.0 + eps_high, (1.0 + eps_high) * unit_BxT, rho_BxT))


def policy_loss(logp_BxT: jax.Array, old_logp_BxT: jax.Array, adv_B: jax.Array, mask_BxT: jax.Array,
                cfg: PolicyLossConfig, *, ref_logp_BxT: jax.Array | None = None,
                entropy_BxT: jax.Array | None = None,
                has_eos_B: jax.Array | None = None) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Clipped surrogate + beta*KL - entropy_coef*H per token, aggregated; returns (loss, metrics).

  `old_logp_BxT` are the log-probs recorded at sampling (mu > 1) or sg(logp_BxT) (mu = 1, where rho = 1:
  the loss then reads -mean(A) but its gradient is -A * grad logp). Metrics are token-means over the active
  mask whatever the aggregation; `kl` appears only with `ref_logp_BxT`, `entropy` only with `entropy_BxT`.
  `adv_B` is one advantage per sequence [B] (group estimators), broadcast over its tokens, or one per
  token [B, T] (PPO's GAE).

  KL (beta > 0): the per-token KL term goes through the same `aggregation` as the surrogate, so beta
  weighs it like TRL's per-token KL coefficient. In "gradient" mode its value is sg(k_t) (the estimator,
  what "loss" mode reads too) and its gradient `kl_gradient_term`'s, so the loss's gradient is
  beta * sum_{i,t} c_{i,t} rho_{i,t} R_{i,t} grad logp_{i,t}, with c the aggregation's token weight:
  1 / N_active ("token-mean") or 1 / (B * L) ("seq-mean-token-sum-norm"), i.e. exactly
  beta * c * grad sum_i KL(pi(.|q_i) || pi_ref(.|q_i)) in expectation at mu = 1; under
  "seq-mean-token-mean" c = 1 / (B * n_i) depends on the sampled length n_i, which weighs each
  sequence's KL per token like GRPO's surrogate but is the KL's gradient only when lengths are equal.
  """
  mask_BxT = mask_BxT.astype(jnp.float32)
  if cfg.mask_truncated:
    if has_eos_B is None:
      raise ValueError("PolicyLossConfig.mask_truncated=True needs has_eos_B (which rows ended with EOS)")
    mask_BxT = mask_BxT * has_eos_B.astype(jnp.float32)[:, None]
  active_BxT = mask_BxT > 0
  on_mask = lambda x_BxT: jnp.where(active_BxT, x_BxT.astype(jnp.float32), 0.0)  # before any exp or sum
  logp_BxT = on_mask(logp_BxT)
  old_logp_BxT = on_mask(old_logp_BxT)
  adv = adv_B.astype(jnp.float32)
  adv = adv[:, None] if adv.ndim == 1 else on_mask(adv)  # [B, 1] or [B, T]: either broadcasts against [B, T]

  rho_BxT = _ratio(logp_BxT, old_logp_BxT, mask_BxT, cfg.ratio_level)
  clipped_BxT = _clipped_ratio(rho_BxT, logp_BxT, cfg.eps_low, cfg.eps_high, cfg.clip_mode)
  pg_BxT = -jnp.minimum(rho_BxT * adv, clipped_BxT * adv)
  if cfg.dual_clip_c:
    pg_BxT = jnp.where(adv < 0, jnp.minimum(pg_BxT, -cfg.dual_clip_c * adv), pg_BxT)

  total_BxT = pg_BxT
  metrics = {}
  if cfg.kl_beta:
    if ref_logp_BxT is None:
      raise ValueError(f"PolicyLossConfig.kl_beta={cfg.kl_beta} needs ref_logp_BxT from the frozen reference")
  if ref_logp_BxT is not None:
    ref_logp_BxT = on_mask(ref_logp_BxT)
    kl_BxT = on_mask(kl_per_token(logp_BxT, ref_logp_BxT, cfg.kl_estimator))
    metrics["kl"] = masked_mean(kl_BxT, mask_BxT)
    if cfg.kl_beta and cfg.kl_mode != "reward":  # "reward": the penalty is in the advantages already
      if cfg.kl_mode == "gradient":
        kl_BxT = jax.lax.stop_gradient(kl_BxT) + kl_gradient_term(logp_BxT, old_logp_BxT, ref_logp_BxT, mask_BxT)
      total_BxT = total_BxT + cfg.kl_beta * kl_BxT
  if cfg.entropy_coef:
    if entropy_BxT is None:
      raise ValueError(f"PolicyLossConfig.entropy_coef={cfg.entropy_coef} needs entropy_BxT (token_entropy)")
  if entropy_BxT is not None:
    entropy_BxT = on_mask(entropy_BxT)
    metrics["entropy"] = masked_mean(entropy_BxT, mask_BxT)
    if cfg.entropy_coef:
      total_BxT = total_BxT - cfg.entropy_coef * entropy_BxT

  loss = aggregate(total_BxT, mask_BxT, cfg.aggregation, cfg.max_completion_len)
  rho_value_BxT = jax.lax.stop_gradient(rho_BxT)
  low_BxT = ((rho_value_BxT < 1.0 - cfg.eps_low) & (adv < 0)).astype(jnp.float32)
  high_BxT = ((rho_value_BxT > 1.0 + cfg.eps_high) & (adv > 0)).astype(jnp.float32)
  metrics.update({  # TRL's names: token means over the active tokens
      "pg_loss": aggregate(pg_BxT, mask_BxT, cfg.aggregation, cfg.max_completion_len),
      "clip_ratio/low_mean": masked_mean(low_BxT, mask_BxT),
      "clip_ratio/high_mean": masked_mean(high_BxT, mask_BxT),
      "clip_ratio/region_mean": masked_mean(jnp.maximum(low_BxT, high_BxT), mask_BxT),
      "ratio_mean": masked_mean(rho_value_BxT, mask_BxT),
  })
  return loss, jax.tree.map(jax.lax.stop_gradient, metrics)


def value_loss(values_BxT: jax.Array, returns_BxT: jax.Array, old_values_BxT: jax.Array,
               mask_BxT: jax.Array, clip_eps: float) -> tuple[jax.Array, dict[str, jax.Array]]:
  """PPO clipped value loss, 0.5 * max((V - R)^2, (V_clip - R)^2), token-mean over the mask.

  V_clip = V_old + clip(V - V_old, -eps, eps) keeps the critic from moving far from the values that produced
  the advantages. Returns (loss, {"value_clip_frac"}).
  """
  mask_BxT = mask_BxT.astype(jnp.float32)
  values_BxT = values_BxT.astype(jnp.float32)
  clipped_BxT = old_values_BxT + jnp.clip(values_BxT - old_values_BxT, -clip_eps, clip_eps)
  unclipped_sq_BxT = jnp.square(values_BxT - returns_BxT)
  clipped_sq_BxT = jnp.square(clipped_BxT - returns_BxT)
  loss = 0.5 * masked_mean(jnp.maximum(unclipped_sq_BxT, clipped_sq_BxT), mask_BxT)
  frac = masked_mean((clipped_sq_BxT > unclipped_sq_BxT).astype(jnp.float32), mask_BxT)
  return loss, {"value_clip_frac": jax.lax.stop_gradient(frac)}
