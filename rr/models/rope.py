"""Rotary position embeddings, Llama/Qwen "rotate_half" convention.

The head dimension is split into two halves (not interleaved pairs):
x_rot = x * cos + rotate_half(x) * sin with rotate_half(x) = [-x2, x1], the
layout Hugging Face Llama/Qwen checkpoints expect. The tables are computed once
per forward pass, shared by every layer, and stored full width with the sign of
rotate_half folded into sin, so applying them is one swap of halves and a
multiply-add (measured cheaper on XLA:CPU than rotating each half separately).
"""

import jax.numpy as jnp


def rope_tables(positions: jnp.ndarray, head_dim: int, theta: float):
    """Returns (signed_sin, cos) of shape positions.shape + (head_dim,), float32.

    signed_sin = [-sin, sin] and cos = [cos, cos] over the two halves, with angle
    position / theta^(2i / head_dim) for frequency i. Padding positions (-1) get
    finite angles; attention masks them out.
    """
    half = head_dim // 2
    inv_freq_K = 1.0 / (theta ** (jnp.arange(half, dtype=jnp.float32) * 2.0 / head_dim))
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
