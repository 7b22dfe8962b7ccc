"""The forward pass of a batch whose groups of G rows share their prompt: each prompt is computed once.

Layout (rr.train.rollout.rollout_batch's): rows g*G .. g*G+G-1 hold the same tokens and positions in
columns [0, P), the prompt left-padded (positions -1 on padding), and each row's completion from column P
on, right padded. Running the prompt once per group into a KV cache and the G completions on top of it is
the same function as one plain forward, with (G - 1) / G of the prompt's FLOPs removed (forward and
backward).
"""

import jax
import jax.numpy as jnp

from rr.models.cache import init_cache, repeat_rows
from rr.models.decoder import Decoder


def shared_prompt_forward(model: Decoder, params, tokens_BxT: jax.Array, positions_BxT: jax.Array,
                          shared_prompt: tuple[int, int] | None = None, segment_ids_BxT: jax.Array | None = None):
  """(logits [B, T, V], hidden [B, T, D]); equal to one plain call of the model with return_hidden=True.

  Equal at every real position (position >= 0). Padding positions attend to no key, so their outputs (read by
  no real position, and to be masked out of any loss) average over a different set of slots and differ.

  `shared_prompt = (G, P)`: rows g*G .. g*G+G-1 hold the same prompt in columns [0, P). The prompt runs
  once per group into a KV cache, which each completion reads; the prompt columns' outputs are repeated
  to all G rows, so gradients from every completion sum into the one shared prompt pass. None (or G = 1)
  runs the plain forward. The rows of a group sharing their prompt is assumed, not checked: rows g*G + 1
  .. g*G + G - 1 of the prompt columns are never read.

  `segment_ids_BxT` (packed SFT rows, rr.train.batch.TrainBatch) goes to the plain forward; the shared-prompt
  layout of rollouts is never packed.
  """
  if shared_prompt is None or shared_prompt[0] == 1:
    logits_BxTxV, _, hidden_BxTxD = model.apply({"params": params}, tokens_BxT, positions_BxT, return_hidden=True,
                                                segment_ids_BxT=segment_ids_BxT)
    return logits_BxTxV, hidden_BxTxD
  if segment_ids_BxT is not None:
    raise ValueError("shared_prompt_forward: packed rows (segment_ids) cannot share prompts; pass one or the other")
  group, prompt_width = shared_prompt
  cache = init_cache(model.cfg, tokens_BxT.shape[0] // group, tokens_BxT.shape[1])
  logits_p, cache, hidden_p = model.apply({"params": params}, tokens_BxT[::group, :prompt_width],
                                          positions_BxT[::group, :prompt_width], cache, return_hidden=True)
  cache = repeat_rows(cache, group)
  logits_c, _, hidden_c = model.apply({"params": params}, tokens_BxT[:, prompt_width:],
                                      positions_BxT[:, prompt_width:], cache, return_hidden=True)
  logits_BxTxV = jnp.concatenate([jnp.repeat(logits_p, group, axis=0), logits_c], axis=1)
  hidden_BxTxD = jnp.concatenate([jnp.repeat(hidden_p, group, axis=0), hidden_c], axis=1)
  return logits_BxTxV, hidden_BxTxD
