"""One clipped policy-gradient loss whose options cover GRPO, Dr.GRPO, DAPO, GSPO, GPPO and PPO.

The math is METHODS.md section 1. Every algorithm is a `PolicyLossConfig`, not a copy of the loss, so a
fix to masking or aggregation reaches them all. Inputs are per-token log-probs of the sampled completion
tokens (`rr.losses.token_log_probs`); nothing here sees a model.

GSPO: we use the GSPO-token form, rho_{i,t} = sg(s_i) * exp(logp_t - sg(logp_t)), with
s_i = exp(sum_t m (logp - old) / sum_t m). Its value is the sequence ratio s_i on every token (so clipping
acts per sequence) and its gradient reaches each token as s_i * grad logp_t. Under `seq-mean-token-mean`
this is exactly GSPO's sequence-level gradient; under `token-mean` long sequences weigh more, as in
GSPO-token.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

RATIO_LEVELS = ("token", "sequence")
CLIP_MODES = ("clip", "gppo")
AGGREGATIONS = ("seq-mean-token-mean", "token-mean", "seq-mean-token-sum-norm")
KL_ESTIMATORS = ("k1", "k2", "k3")


@dataclasses.dataclass(frozen=True)
class PolicyLossConfig:
  """Options of the policy loss; defaults are GRPO with the symmetric PPO clip and no KL.

  DAPO: eps_high=0.28, aggregation="token-mean", mask_truncated=True. Dr.GRPO: aggregation=
  "seq-mean-token-sum-norm" (with "drgrpo" advantages). GSPO: ratio_level="sequence" (small eps, e.g.
  3e-4/4e-4). GPPO: clip_mode="gppo". `max_completion_len` is Dr.GRPO's constant; None means the mask width.
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
  entropy_coef: float = 0.0
  mask_truncated: bool = False

  def __post_init__(self):
    for field, value, allowed in (("ratio_level", self.ratio_level, RATIO_LEVELS),
                                  ("clip_mode", self.clip_mode, CLIP_MODES),
                                  ("aggregation", self.aggregation, AGGREGATIONS),
                                  ("kl_estimator", self.kl_estimator, KL_ESTIMATORS)):
      if value not in allowed:
        raise ValueError(f"PolicyLossConfig.{field}={value!r}; expected one of {allowed}")
    if self.dual_clip_c and self.dual_clip_c <= 1.0:
      raise ValueError(f"PolicyLossConfig.dual_clip_c={self.dual_clip_c}; use 0 (off) or a value > 1, e.g. 3")
    if self.eps_low < 0 or self.eps_high < 0:
      raise ValueError(f"PolicyLossConfig eps_low={self.eps_low}, eps_high={self.eps_high}; must be >= 0")


def token_entropy(logits_BxTxV: jax.Array) -> jax.Array:
  """Entropy of the next-token distribution at each position, in float32 (for the bonus and the log)."""
  logits = logits_BxTxV.astype(jnp.float32)
  log_z_BxT = jax.nn.logsumexp(logits, axis=-1)
  p_BxTxV = jax.nn.softmax(logits, axis=-1)
  return log_z_BxT - jnp.sum(p_BxTxV * logits, axis=-1)


def kl_per_token(logp_BxT: jax.Array, ref_logp_BxT: jax.Array, estimator: str) -> jax.Array:
  """Per-token estimate of KL(pi_theta || pi_ref) from samples of pi_theta (Schulman's k1/k2/k3)."""
  if estimator == "k1":
    return logp_BxT - ref_logp_BxT
  if estimator == "k2":
    return 0.5 * jnp.square(logp_BxT - ref_logp_BxT)
  if estimator == "k3":
    log_r = ref_logp_BxT - logp_BxT
    return jnp.exp(log_r) - log_r - 1.0
  raise ValueError(f"kl_estimator={estimator!r}; expected one of {KL_ESTIMATORS}")


def _masked_mean(x_BxT: jax.Array, mask_BxT: jax.Array) -> jax.Array:
  return jnp.sum(x_BxT * mask_BxT) / jnp.maximum(jnp.sum(mask_BxT), 1.0)


def aggregate(loss_BxT: jax.Array, mask_BxT: jax.Array, aggregation: str,
              max_completion_len: int | None = None) -> jax.Array:
  """Reduce per-token losses to a scalar; the choice decides how much each token and each sequence weighs."""
  masked_BxT = loss_BxT * mask_BxT
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
  """
  mask_BxT = mask_BxT.astype(jnp.float32)
  if cfg.mask_truncated:
    if has_eos_B is None:
      raise ValueError("PolicyLossConfig.mask_truncated=True needs has_eos_B (which rows ended with EOS)")
    mask_BxT = mask_BxT * has_eos_B.astype(jnp.float32)[:, None]
  logp_BxT = logp_BxT.astype(jnp.float32)
  old_logp_BxT = old_logp_BxT.astype(jnp.float32)
  adv = adv_B.astype(jnp.float32)
  adv = adv[:, None] if adv.ndim == 1 else adv  # [B, 1] or [B, T]: either broadcasts against [B, T]

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
    kl_BxT = kl_per_token(logp_BxT, ref_logp_BxT.astype(jnp.float32), cfg.kl_estimator)
    metrics["kl"] = _masked_mean(kl_BxT, mask_BxT)
    if cfg.kl_beta:
      total_BxT = total_BxT + cfg.kl_beta * kl_BxT
  if cfg.entropy_coef:
    if entropy_BxT is None:
      raise ValueError(f"PolicyLossConfig.entropy_coef={cfg.entropy_coef} needs entropy_BxT (token_entropy)")
  if entropy_BxT is not None:
    entropy_BxT = entropy_BxT.astype(jnp.float32)
    metrics["entropy"] = _masked_mean(entropy_BxT, mask_BxT)
    if cfg.entropy_coef:
      total_BxT = total_BxT - cfg.entropy_coef * entropy_BxT

  loss = aggregate(total_BxT, mask_BxT, cfg.aggregation, cfg.max_completion_len)
  rho_value_BxT = jax.lax.stop_gradient(rho_BxT)
  low_BxT = ((rho_value_BxT < 1.0 - cfg.eps_low) & (adv < 0)).astype(jnp.float32)
  high_BxT = ((rho_value_BxT > 1.0 + cfg.eps_high) & (adv > 0)).astype(jnp.float32)
  metrics.update(
      pg_loss=aggregate(pg_BxT, mask_BxT, cfg.aggregation, cfg.max_completion_len),
      clip_frac_low=_masked_mean(low_BxT, mask_BxT),
      clip_frac_high=_masked_mean(high_BxT, mask_BxT),
      clip_ratio=_masked_mean(jnp.maximum(low_BxT, high_BxT), mask_BxT),
      ratio_mean=_masked_mean(rho_value_BxT, mask_BxT),
  )
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
  loss = 0.5 * _masked_mean(jnp.maximum(unclipped_sq_BxT, clipped_sq_BxT), mask_BxT)
  frac = _masked_mean((clipped_sq_BxT > unclipped_sq_BxT).astype(jnp.float32), mask_BxT)
  return loss, {"value_clip_frac": jax.lax.stop_gradient(frac)}
