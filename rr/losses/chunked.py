"""Completion NLL from the final hidden states, a chunk of tokens at a time: no B x T x V logits at once.

With a large vocabulary the float32 logits are the largest tensor of a training step (qwen2-0.5b, V = 151,936,
8 x 2048 tokens: 10 GB, and as much again for their gradient). `chunked_completion_nll` applies the lm head, the
log-softmax and the target pick to one block of columns (every row) at a time in a lax.scan; each block runs
under jax.checkpoint, so the backward recomputes its logits instead of keeping them, and only a block's
chunk_tokens x V logits (and their gradient) are live. The blocks are column ranges of every row, not ranges of
flattened rows, so a batch sharded over its rows stays sharded. The value is rr.losses.completion_nll's.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rr.losses.sft import next_token_targets, token_log_probs


def lm_head_weight(params) -> jax.Array:
  """The V x D matrix whose row v scores token v: the tied embedding table, else the lm_head kernel (D x V)
  transposed (rr.models.Decoder's param names)."""
  if "lm_head" in params:
    return params["lm_head"]["kernel"].T
  return params["embed"]["embedding"]


def chunked_completion_nll(hidden_BxTxD: jax.Array, unembed_VxD: jax.Array, tokens_BxT: jax.Array,
                           loss_mask_BxT: jax.Array, chunk_tokens: int) -> tuple[jax.Array, jax.Array]:
  """completion_nll(hidden @ unembed^T, tokens, loss_mask): the token-mean NLL over the mask, and the count.

  hidden: the Decoder's return_hidden output (after the final norm, in the compute dtype); unembed: lm_head_weight
  of the params, cast to hidden's dtype inside each block, as the Decoder does, so its gradient adds up in the
  params' dtype. Each block holds chunk_tokens // B columns of every row (at least one), so at most chunk_tokens
  tokens when chunk_tokens >= B; the last block is padded with masked columns.
  """
  if chunk_tokens <= 0:
    raise ValueError(f"chunk_tokens must be positive, got {chunk_tokens}")
  B, T, D = hidden_BxTxD.shape
  columns = min(T, max(1, chunk_tokens // B))
  blocks = -(-T // columns)
  pad = blocks * columns - T
  mask_BxT = loss_mask_BxT.astype(jnp.float32)
  targets_BxT = next_token_targets(tokens_BxT)
  if pad:
    hidden_BxTxD = jnp.pad(hidden_BxTxD, ((0, 0), (0, pad), (0, 0)))
    targets_BxT, mask_BxT = (jnp.pad(x, ((0, 0), (0, pad))) for x in (targets_BxT, mask_BxT))
  # Blocks first, for the scan: [n, B, c, ...].
  to_blocks = lambda x: jnp.moveaxis(x.reshape(B, blocks, columns, *x.shape[2:]), 1, 0)

  @jax.checkpoint
  def block_nll_sum(unembed_VxD, x_BxCxD, targets_BxC, mask_BxC):
    logits_BxCxV = jnp.einsum("bcd,vd->bcv", x_BxCxD, unembed_VxD.astype(x_BxCxD.dtype),
                              preferred_element_type=jnp.float32)
    return -(token_log_probs(logits_BxCxV, targets_BxC) * mask_BxC).sum()

  def add_block(total, block):
    return total + block_nll_sum(unembed_VxD, *block), None

  blocks_data = (to_blocks(hidden_BxTxD), to_blocks(targets_BxT), to_blocks(mask_BxT))
  total, _ = jax.lax.scan(add_block, jnp.zeros((), jnp.float32), blocks_data)
  count = mask_BxT.sum()
  return total / jnp.maximum(count, 1.0), count
