"""Rotary position embeddings, Llama/Qwen "rotate_half" convention.

The head dimension is split into two halves (not interleaved pairs):
x_rot = x * cos + rotate_half(x) * sin with rotate_half(x) = [-x2, x1], the
layout Hugging Face Llama/Qwen checkpoints expect. The tables are computed once
per forward pass, shared by every layer, and stored full width with the sign of
rotate_half folded into sin, so applying them is one swap of halves and a
multiply-add (measured cheaper on XLA:CPU than rotating each half separately).
"""

import math

import jax.numpy as jnp


def inverse_frequencies(cfg) -> jnp.ndarray:
  """The head_dim / 2 rotation speeds of a ModelConfig, float32: theta^(-2i / head_dim), then scaled
  as cfg.rope_type says ("default": not at all; "llama3": Llama 3.1's long-context rescaling)."""
  head_dim = cfg.resolved_head_dim
  inv_freq_K = 1.0 / (cfg.rope_theta ** (jnp.arange(head_dim // 2, dtype=jnp.float32) * 2.0 / head_dim))
  if cfg.rope_type == "llama3":
    inv_freq_K = llama3_scaled(inv_freq_K, cfg.rope_factor, cfg.rope_low_freq_factor,
                               cfg.rope_high_freq_factor, cfg.rope_original_max_positions)
  return inv_freq_K


def llama3_scaled(inv_freq_K, factor: float, low_freq_factor: float, high_freq_factor: float,
                  original_max_positions: int) -> jnp.ndarray:
  """Llama 3.1's rope scaling (transformers' rope_type "llama3"), so a model pre-trained on
  original_max_positions tokens reads longer contexts: frequencies whose wavelength is below
  original / high_freq_factor (they turn many times within the pre-training length) are kept, those above
  original / low_freq_factor are slowed down by `factor`, and the band between blends the two linearly
  in original / wavelength."""
  wavelen_K = 2 * math.pi / inv_freq_K
  short_wavelen = original_max_positions / high_freq_factor
  long_wavelen = original_max_positions / low_freq_factor
  blend_K = (original_max_positions / wavelen_K - low_freq_factor) / (high_freq_factor - low_freq_factor)
  blended_K = (1 - blend_K) * inv_freq_K / factor + blend_K * inv_freq_K
  scaled_K = jnp.where(wavelen_K > long_wavelen, inv_freq_K / factor, blended_K)
  return jnp.where(wavelen_K < short_wavelen, inv_freq_K, scaled_K)


def rope_tables(positions: jnp.ndarray, inv_freq_K: jnp.ndarray):
  """Returns (signed_sin, cos) of shape positions.shape + (head_dim,), float32.

  signed_sin = [-sin, sin] and cos = [cos, cos] over the two halves, with angle
  position * inv_freq[i] for frequency i (see inverse_frequencies). Padding
  positions (-1) get finite angles; attention masks them out.
  """
  angles_xK = positions.astype(jnp.float32)[..., None] * inv_freq_K
  sin_xK, cos_xK = jnp.sin(angles_xK), jnp.cos(angles_xK)
  return jnp.concatenate([-sin_xK, sin_xK], axis=-1), jnp.concatenate([cos_xK, cos_xK], axis=-1)


def apply_rope(x_xNxH: jnp.ndarray, signed_sin_xH: jnp.ndarray, cos_xH: jnp.ndarray) -> jnp.ndarray:
  """Rotates every head N of x (tokens first, e.g. M x N x H) by its token's angles.

  Tables have the token shape of x plus H; float32 math, result in x's dtype.
  """
  half = x_xNxH.shape[-1] // 2
  x = x_xNxH.astype(jnp.float32)
  swapped = jnp.concatenate([x[..., half:], x[..., :half]], axis=-1)  # [x2, x1]
  rotated = x * cos_xH[..., None, :] + swapped * signed_sin_xH[..., None, :]
  return rotated.astype(x_xNxH.dtype)
