"""The decoder-only transformer (Llama/Qwen family) and its functional entry points.

    logits_BxTxV, cache = Decoder(cfg).apply({"params": params}, tokens_BxT, positions_BxT, cache)

Attention visibility comes from positions alone: a query at position p sees a
key at position k iff 0 <= k <= p, so padding (position -1) is never a key and
left padding (sampler) and right padding (training) need no separate mask.
Packed rows (several examples per row, SFT) add segment ids: a query also needs the key's segment to be its own.
Layers are unrolled in Python: lax.scan over layers is slow on XLA:CPU.
`cfg.remat` wraps each layer in flax's nn.remat (see REMAT_POLICIES); the param tree is the same.
Parameter names follow Hugging Face's layout (embed, layers_{i}/attn/{q,k,v,o},
layers_{i}/mlp/{gate,up,down}, input_norm, post_attn_norm, final_norm, lm_head/kernel).
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from rr.models.cache import write_slots
from rr.models.config import ModelConfig
from rr.models.layers import Attention, Projection, RMSNorm, SwiGLU
from rr.models.rope import inverse_frequencies, rope_tables

# cfg.remat -> what the backward pass keeps of each layer's activations (jax.checkpoint policy).
# "none": no remat, everything is kept; "full": only the layer's inputs, the whole layer is recomputed;
# "dots": matmul outputs (no batch dims) are kept, elementwise work (norms, rope, softmax, silu) recomputed.
REMAT_POLICIES = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


class Embed(nn.Module):
  """Token embedding table V x D; `attend` gives tied output logits."""
  cfg: ModelConfig

  def setup(self):
    self.embedding = self.param(
        "embedding", nn.with_logical_partitioning(nn.initializers.normal(0.02), ("vocab", "embed")),
        (self.cfg.vocab_size, self.cfg.hidden_size), self.cfg.weight_dtype)

  def __call__(self, tokens_M: jnp.ndarray) -> jnp.ndarray:
    dtype = self.cfg.compute_dtype
    table_VxD = self.embedding.astype(dtype)
    if self.cfg.embed_one_hot:
      # One-hot matmul: its backward is a matmul, not a scatter (much faster on XLA:CPU).
      one_hot_MxV = jax.nn.one_hot(tokens_M, self.cfg.vocab_size, dtype=dtype)
      return jnp.einsum("mv,vd->md", one_hot_MxV, table_VxD)
    return jnp.take(table_VxD, tokens_M, axis=0, mode="clip")

  def attend(self, x_MxD: jnp.ndarray) -> jnp.ndarray:
    return jnp.einsum("md,vd->mv", x_MxD, self.embedding.astype(self.cfg.compute_dtype),
                      preferred_element_type=jnp.float32)


class DecoderLayer(nn.Module):
  """Pre-norm block: x + attn(norm(x)), then + mlp(norm(.))."""
  cfg: ModelConfig

  @nn.compact
  def __call__(self, x_MxD, sin_MxH, cos_MxH, mask_BxTxS, cache_kv=None, end=None):
    cfg = self.cfg
    norm = lambda name: RMSNorm(cfg.rms_norm_eps, cfg.compute_dtype, cfg.weight_dtype, name=name)
    attn_MxD, cache_kv = Attention(cfg, name="attn")(
        norm("input_norm")(x_MxD), sin_MxH, cos_MxH, mask_BxTxS, cache_kv, end)
    x_MxD = x_MxD + attn_MxD
    x_MxD = x_MxD + SwiGLU(cfg, name="mlp")(norm("post_attn_norm")(x_MxD))
    return x_MxD, cache_kv


def layer_class(cfg: ModelConfig):
  """DecoderLayer, or it wrapped in nn.remat with cfg.remat's policy (same params, same values)."""
  if cfg.remat == "none":
    return DecoderLayer
  return nn.remat(DecoderLayer, policy=REMAT_POLICIES[cfg.remat])


def visibility_mask(query_pos_BxT: jnp.ndarray, key_pos_BxS: jnp.ndarray) -> jnp.ndarray:
  """mask[b, t, s] = 0 <= key_pos[b, s] <= query_pos[b, t]."""
  key_BxS = key_pos_BxS[:, None, :]
  return (key_BxS >= 0) & (key_BxS <= query_pos_BxT[:, :, None])


class Decoder(nn.Module):
  """Decoder-only transformer. Inside, token-wise work runs on M = B * T flattened rows
  (free reshapes; it spares XLA:CPU relayout copies in the backward pass)."""
  cfg: ModelConfig

  @nn.compact
  def __call__(self, tokens_BxT, positions_BxT, cache=None, return_hidden=False, segment_ids_BxT=None):
    """Returns (logits_BxTxV float32, cache advanced by T, or None when cache is None).

    `return_hidden=True` appends the final hidden states [B, T, D] (after the final norm, the
    lm head's input) for heads that share the trunk, e.g. PPO's value head; params are the same.
    `segment_ids_BxT` (packed rows, positions restarting at 0 in each segment): a query sees only keys of its
    own segment. Only without a cache: packing is for training forwards, never for sampling.
    """
    cfg = self.cfg
    B, T = tokens_BxT.shape
    positions_BxT = positions_BxT.astype(jnp.int32)
    embed = Embed(cfg, name="embed")
    x_MxD = embed(tokens_BxT.reshape(B * T))
    sin_MxH, cos_MxH = rope_tables(positions_BxT.reshape(B * T), inverse_frequencies(cfg))

    if cache is None:
      end = None
      mask_BxTxS = visibility_mask(positions_BxT, positions_BxT)
      if segment_ids_BxT is not None:
        mask_BxTxS = mask_BxTxS & (segment_ids_BxT[:, :, None] == segment_ids_BxT[:, None, :])
    elif segment_ids_BxT is not None:
      raise ValueError("segment_ids (packed rows) apply to a forward without a KV cache only")
    else:
      end = cache["end"]
      key_pos_BxS = write_slots(cache["pos"], positions_BxT, end)
      mask_BxTxS = visibility_mask(positions_BxT, key_pos_BxS)
      new_k, new_v = [], []

    layer = layer_class(cfg)
    for i in range(cfg.num_layers):
      layer_kv = None if cache is None else (cache["k"][i], cache["v"][i])
      x_MxD, layer_kv = layer(cfg, name=f"layers_{i}")(
          x_MxD, sin_MxH, cos_MxH, mask_BxTxS, layer_kv, end)
      if cache is not None:
        new_k.append(layer_kv[0])
        new_v.append(layer_kv[1])

    x_MxD = RMSNorm(cfg.rms_norm_eps, cfg.compute_dtype, cfg.weight_dtype, name="final_norm")(x_MxD)
    if cfg.tie_embeddings:
      logits_MxV = embed.attend(x_MxD)
    else:
      logits_MxV = Projection(
          "md,dv->mv", (cfg.hidden_size, cfg.vocab_size), ("embed", "vocab"),
          dtype=cfg.compute_dtype, param_dtype=cfg.weight_dtype, out_dtype=jnp.float32,
          name="lm_head")(x_MxD)
    logits_BxTxV = logits_MxV.reshape(B, T, cfg.vocab_size)

    new_cache = None
    if cache is not None:
      new_cache = {"k": new_k, "v": new_v, "pos": key_pos_BxS, "end": end + jnp.int32(T)}
    if return_hidden:
      return logits_BxTxV, new_cache, x_MxD.reshape(B, T, cfg.hidden_size)
    return logits_BxTxV, new_cache


def _dummy_inputs():
  tokens_1x1 = jnp.zeros((1, 1), jnp.int32)
  return tokens_1x1, tokens_1x1


@functools.lru_cache(maxsize=16)
def _jitted_init(cfg: ModelConfig):
  def init(rng):
    # Flax draws every parameter with its own PRNG calls; with threefry each call is
    # a separate kernel that XLA:CPU takes ~0.1 s to compile (seconds for a nano
    # model). Drawing through the RngBitGenerator PRNG ("rbg") compiled 2-4x faster
    # here. Values are reproducible per seed on a given backend, not across backends.
    rbg_key = jax.random.wrap_key_data(jax.random.bits(rng, (4,), jnp.uint32), impl="rbg")
    return nn.unbox(Decoder(cfg).init(rbg_key, *_dummy_inputs())["params"])

  return jax.jit(init)


def init_params(cfg: ModelConfig, rng: jax.Array, out_shardings=None) -> dict:
  """Freshly initialised params (plain arrays). `out_shardings` (e.g. from
  rr.sharding.logical_to_shardings) creates them directly sharded. The compiled
  init is cached per config, so repeated calls cost no compilation."""
  if out_shardings is None:
    return _jitted_init(cfg)(rng)
  return jax.jit(_jitted_init(cfg), out_shardings=out_shardings)(rng)


def param_logical_axes(cfg: ModelConfig) -> dict:
  """PartitionSpecs over logical axis names, same tree as init_params (costs no FLOPs)."""
  boxed = jax.eval_shape(lambda rng: Decoder(cfg).init(rng, *_dummy_inputs())["params"],
                         jax.random.key(0))
  return nn.get_partition_spec(boxed)


@functools.lru_cache(maxsize=16)
def _jitted_forward(cfg: ModelConfig):
  def run(params, tokens_BxT):
    B, T = tokens_BxT.shape
    positions_BxT = jnp.broadcast_to(jnp.arange(T, dtype=jnp.int32), (B, T))
    return Decoder(cfg).apply({"params": params}, tokens_BxT, positions_BxT)[0]

  return jax.jit(run)


def forward(cfg: ModelConfig, params: dict, tokens_BxT) -> jnp.ndarray:
  """Float32 logits of a plain forward pass with positions 0..T-1 on every row, for notebooks and tests.

  Params may be numpy or jax arrays of any float dtype (e.g. from_hf(path, "bfloat16")): each is cast to
  cfg's compute dtype at use. Jitted once per config and shape.
  """
  return _jitted_forward(cfg)(params, jnp.asarray(tokens_BxT, jnp.int32))
