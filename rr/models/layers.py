"""Transformer building blocks: RMSNorm, projections, grouped-query attention, SwiGLU.

Every parameter carries logical axis names (nn.with_logical_partitioning) so
rr.sharding can map it onto any mesh. Parameters are stored in param_dtype
and cast to the compute dtype at use. Kernels keep heads as their own axis
(D x H x Dh) so that q/k/v/o are single einsums without reshapes or transposes.

Token-wise layers take activations flattened to M = B * T rows (x_MxD): on
XLA:CPU, weight gradients of 3-D activations (contracting over both B and T)
forced strided relayout copies that made an MLP's forward+backward ~1.5x
slower (measured, qwen2-tiny shapes); 2-D rows need none.

The attention core has two implementations (ModelConfig.attention, resolved by
attention_implementation): the einsum path below, tuned for XLA:CPU and used on
every backend, and cuDNN's fused flash attention through
jax.nn.dot_product_attention on NVIDIA GPUs in bf16/fp16, which never holds the
T x S scores in memory. Both read the same boolean B x T x S mask. Without a KV
cache the keys are the call's own tokens, laid out in position order (training
rows, left-padded prompts, packed segments), so no key after a query's slot is
ever visible: cuDNN then also gets is_causal and skips the blocks above the
diagonal.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from rr.models.cache import write_slots
from rr.models.rope import apply_rope

# Added to masked attention scores: finite, so a query with no visible key
# (a padding query) gets a uniform (harmless) distribution instead of NaN.
MASKED_SCORE = -1e30


class RMSNorm(nn.Module):
  """x / rms(x) * scale, statistics in float32 (as Hugging Face Llama/Qwen)."""
  eps: float
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_Mx_: jnp.ndarray) -> jnp.ndarray:
    scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones, ("norm",)),
                       (x_Mx_.shape[-1],), self.param_dtype)
    x = x_Mx_.astype(jnp.float32)
    normed = x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + self.eps)
    return normed.astype(self.dtype) * scale.astype(self.dtype)


class Projection(nn.Module):
  """A linear map written as one einsum; the first `num_in_axes` kernel axes are the inputs.

  The optional bias covers the output axes (Qwen2's q/k/v bias).
  """
  equation: str
  kernel_shape: tuple[int, ...]
  kernel_axes: tuple[str, ...]
  num_in_axes: int = 1
  use_bias: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  out_dtype: Any = None  # e.g. float32 logits from bf16 compute

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    ndim = len(self.kernel_shape)
    init = nn.initializers.variance_scaling(
        1.0, "fan_in", "truncated_normal",
        in_axis=tuple(range(self.num_in_axes)), out_axis=tuple(range(self.num_in_axes, ndim)))
    kernel = self.param("kernel", nn.with_logical_partitioning(init, self.kernel_axes),
                        self.kernel_shape, self.param_dtype)
    y = jnp.einsum(self.equation, x.astype(self.dtype), kernel.astype(self.dtype),
                   preferred_element_type=self.out_dtype)
    if self.use_bias:
      bias = self.param(
          "bias",
          nn.with_logical_partitioning(nn.initializers.zeros, self.kernel_axes[self.num_in_axes:]),
          self.kernel_shape[self.num_in_axes:], self.param_dtype)
      y = y + bias.astype(self.dtype)
    return y


class Attention(nn.Module):
  """Grouped-query attention with rotary embeddings, optional qkv bias and qk-norm.

  Query head h reads kv head h // (num_heads // num_kv_heads), as Hugging Face's repeat_kv.
  Token-wise work runs on flattened M = B * T rows (see Decoder); only the attention
  core needs the (B, T) split, which is a free reshape.
  """
  cfg: Any  # ModelConfig

  @nn.compact
  def __call__(self, x_MxD, sin_MxH, cos_MxH, mask_BxTxS, cache_kv=None, end=None):
    """Returns (out_MxD, (k_cache, v_cache) or None).

    Without a cache the keys are this call's tokens (S = T); with one, the new keys
    are written at slots [end, end + T) and all S slots are attended (masked).
    """
    cfg = self.cfg
    dtype, pdtype = cfg.compute_dtype, cfg.weight_dtype
    D, N, KV, H = cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.resolved_head_dim
    B, T, _ = mask_BxTxS.shape

    def proj(name, heads, axis):
      return Projection("md,dnh->mnh", (D, heads, H), ("embed", axis, "head_dim"),
                        use_bias=cfg.qkv_bias, dtype=dtype, param_dtype=pdtype, name=name)

    q_MxNxH = proj("q", N, "heads")(x_MxD)
    k_MxKVxH = proj("k", KV, "kv_heads")(x_MxD)
    v_MxKVxH = proj("v", KV, "kv_heads")(x_MxD)
    if cfg.qk_norm:
      q_MxNxH = RMSNorm(cfg.rms_norm_eps, dtype, pdtype, name="q_norm")(q_MxNxH)
      k_MxKVxH = RMSNorm(cfg.rms_norm_eps, dtype, pdtype, name="k_norm")(k_MxKVxH)
    q_BxTxNxH = apply_rope(q_MxNxH, sin_MxH, cos_MxH).reshape(B, T, N, H)
    k_BxTxKVxH = apply_rope(k_MxKVxH, sin_MxH, cos_MxH).reshape(B, T, KV, H)
    v_BxTxKVxH = v_MxKVxH.reshape(B, T, KV, H)

    if cache_kv is None:
      new_cache_kv = None
      k_BxSxKVxH, v_BxSxKVxH = k_BxTxKVxH, v_BxTxKVxH
    else:
      k_cache, v_cache = cache_kv
      new_cache_kv = (write_slots(k_cache, k_BxTxKVxH, end), write_slots(v_cache, v_BxTxKVxH, end))
      k_BxSxKVxH, v_BxSxKVxH = (c.astype(dtype) for c in new_cache_kv)

    if attention_implementation(cfg, T, k_BxSxKVxH.shape[1]) == "cudnn":
      out_BxTxNxH = fused_attention(q_BxTxNxH, k_BxSxKVxH, v_BxSxKVxH, mask_BxTxS, causal=cache_kv is None)
    else:
      out_BxTxNxH = grouped_query_attention(q_BxTxNxH, k_BxSxKVxH, v_BxSxKVxH, mask_BxTxS).reshape(B, T, N, H)
    out_MxD = Projection("mnh,nhd->md", (N, H, D), ("heads", "head_dim", "embed"),
                         num_in_axes=2, dtype=dtype, param_dtype=pdtype, name="o")(out_BxTxNxH.reshape(B * T, N, H))
    return out_MxD, new_cache_kv


def attention_implementation(cfg, queries: int, keys: int) -> str:
  """"xla" or "cudnn" for one attention call of `queries` x `keys` (static shapes, at trace time).

  cuDNN runs the calls it can take: cfg.attention is "cudnn" (checked against the device when the config was
  made) or "auto" where cfg.why_not_cudnn is empty, and both lengths are even (cuDNN's backward with a mask
  refuses odd ones). The rest, decode steps (one query) among them, take the einsum path.
  """
  takes_cudnn = cfg.attention == "cudnn" or (cfg.attention == "auto" and not cfg.why_not_cudnn)
  return "cudnn" if takes_cudnn and queries % 2 == 0 and keys % 2 == 0 else "xla"


def grouped_query_attention(q_BxTxNxH, k_BxSxKVxH, v_BxSxKVxH, mask_BxTxS):
  """softmax(q k^T / sqrt(Dh), masked) v with query heads grouped over shared kv heads.

  Scores and softmax are float32 whatever the compute dtype. The T x S tensors keep
  the order dot_general produces (B, KV, T, G, S), so the largest activations are
  never transposed. Returns B x T x KV x G x Dh.
  """
  B, T, N, H = q_BxTxNxH.shape
  KV = k_BxSxKVxH.shape[2]
  q_BxTxKVxGxH = (q_BxTxNxH * (H ** -0.5)).reshape(B, T, KV, N // KV, H)
  scores_BxKVxTxGxS = jnp.einsum("btkgh,bskh->bktgs", q_BxTxKVxGxH, k_BxSxKVxH,
                                 preferred_element_type=jnp.float32)
  scores_BxKVxTxGxS = jnp.where(mask_BxTxS[:, None, :, None, :], scores_BxKVxTxGxS, MASKED_SCORE)
  probs_BxKVxTxGxS = jax.nn.softmax(scores_BxKVxTxGxS, axis=-1).astype(v_BxSxKVxH.dtype)
  # probs (b, k, t, g, s) . v (b, s, k, h): batch (b, k), contract s -> (b, k, t, g, h).
  out_BxKVxTxGxH = jax.lax.dot_general(probs_BxKVxTxGxS, v_BxSxKVxH, (((4,), (1,)), ((0, 1), (0, 2))))
  return out_BxKVxTxGxH.transpose(0, 2, 1, 3, 4)


def fused_attention(q_BxTxNxH, k_BxSxKVxH, v_BxSxKVxH, mask_BxTxS, causal: bool, implementation: str = "cudnn"):
  """jax.nn.dot_product_attention on rr's layouts: GQA heads as they are, the mask broadcast over heads.

  `causal`: no key after the query's slot is visible (keys are the call's tokens in position order), which lets
  cuDNN skip those blocks; the mask alone already says so. implementation="xla" runs the same call anywhere.
  Returns B x T x N x Dh in the inputs' dtype.
  """
  return jax.nn.dot_product_attention(q_BxTxNxH, k_BxSxKVxH, v_BxSxKVxH, mask=mask_BxTxS[:, None],
                                      is_causal=causal, implementation=implementation)


class SwiGLU(nn.Module):
  """down(silu(gate(x)) * up(x))."""
  cfg: Any  # ModelConfig

  @nn.compact
  def __call__(self, x_MxD):
    cfg = self.cfg
    D, F = cfg.hidden_size, cfg.intermediate_size
    kw = dict(dtype=cfg.compute_dtype, param_dtype=cfg.weight_dtype)
    gate_MxF = Projection("md,df->mf", (D, F), ("embed", "mlp"), name="gate", **kw)(x_MxD)
    up_MxF = Projection("md,df->mf", (D, F), ("embed", "mlp"), name="up", **kw)(x_MxD)
    return Projection("mf,fd->md", (F, D), ("mlp", "embed"), name="down", **kw)(
        jax.nn.silu(gate_MxF) * up_MxF)
