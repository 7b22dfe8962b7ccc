"""Rollouts to train batches, and the forward pass that reads them with each group's prompt computed once.

Layout: row = prompt tokens left-padded to `width - C` columns, then the completion from that column on,
right padded (C = the sampler's max_new_tokens). Positions run 0..n-1 over the real tokens, -1 on padding.
`mask[t] = 1` when `tokens[t + 1]` is a completion token, so the log-prob read at `t` is that token's.
`sampler_logp[t]` holds the sampler's log-prob of the same token under the distribution it sampled from
(logits / rl.temperature, renormalised after top-k / top-p), so the trainer, which scores at the same
temperature, can report how far its recomputed log-probs are from what the sampler saw (0 up to float noise
without top-k / top-p; with them, the trainer's unfiltered log-prob is lower by the log of the kept mass).

Every completion starts at the same column, so the G rows of a group share their prompt columns exactly;
`policy_forward` runs those once per group and the completions on top of a KV cache of them, which is
the same function with (G - 1) / G of the prompt's FLOPs removed (forward and backward).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from rr.models import Decoder, init_cache
from rr.sampler.decode import repeat_rows


def rollout_batch(prompts: list[list[int]], num_samples: int, tokens_NxC: np.ndarray, lengths_N: np.ndarray,
                  sampler_logp_NxC: np.ndarray, eos_id: int, pad_id: int, width: int) -> dict[str, np.ndarray]:
  """Builds the [N, width] arrays of one RL step; rows are prompt-major like the sampler's output."""
  n, max_new = tokens_NxC.shape
  prompt_width = width - max_new  # completions start here, on every row
  tokens = np.full((n, width), pad_id, np.int32)
  positions = np.full((n, width), -1, np.int32)
  mask = np.zeros((n, width), np.float32)
  sampler_logp = np.zeros((n, width), np.float32)
  has_eos = np.zeros((n,), bool)
  for row in range(n):
    prompt = np.asarray(prompts[row // num_samples], np.int32)
    if len(prompt) > prompt_width:
      raise ValueError(f"rollout row {row} has a prompt of {len(prompt)} tokens, more than the batch width "
                       f"{width} minus {max_new} completion tokens leaves")
    length = int(lengths_N[row])
    tokens[row, prompt_width - len(prompt):prompt_width] = prompt
    tokens[row, prompt_width:prompt_width + length] = tokens_NxC[row, :length]
    positions[row, prompt_width - len(prompt):prompt_width + length] = np.arange(len(prompt) + length)
    start = prompt_width - 1  # the log-prob of completion token j is read at start + j
    mask[row, start:start + length] = 1.0
    sampler_logp[row, start:start + length] = sampler_logp_NxC[row, :length]
    has_eos[row] = length > 0 and tokens_NxC[row, length - 1] == eos_id
  return {"tokens": tokens, "positions": positions, "mask": mask, "sampler_logp": sampler_logp,
          "has_eos": has_eos}


def policy_forward(model: Decoder, params, tokens_BxT: jax.Array, positions_BxT: jax.Array,
                   shared_prompt: tuple[int, int] | None = None):
  """(logits [B, T, V], hidden [B, T, D]) of a rollout batch; equal to one plain call of the model.

  `shared_prompt = (G, P)`: rows g*G .. g*G+G-1 hold the same prompt in columns [0, P) (the
  `rollout_batch` layout). The prompt runs once per group into a KV cache, which each completion reads;
  the prompt columns' outputs are repeated to all G rows, so gradients from every completion sum into
  the one shared prompt pass. None (or G = 1) runs the plain forward.
  """
  if shared_prompt is None or shared_prompt[0] == 1:
    logits_BxTxV, _, hidden_BxTxD = model.apply({"params": params}, tokens_BxT, positions_BxT, return_hidden=True)
    return logits_BxTxV, hidden_BxTxD
  group, prompt_width = shared_prompt
  cfg = model.cfg
  cache = init_cache(cfg, tokens_BxT.shape[0] // group, tokens_BxT.shape[1])
  logits_p, cache, hidden_p = model.apply({"params": params}, tokens_BxT[::group, :prompt_width],
                                          positions_BxT[::group, :prompt_width], cache, return_hidden=True)
  cache = repeat_rows(cache, group)
  logits_c, _, hidden_c = model.apply({"params": params}, tokens_BxT[:, prompt_width:],
                                      positions_BxT[:, prompt_width:], cache, return_hidden=True)
  logits_BxTxV = jnp.concatenate([jnp.repeat(logits_p, group, axis=0), logits_c], axis=1)
  hidden_BxTxD = jnp.concatenate([jnp.repeat(hidden_p, group, axis=0), hidden_c], axis=1)
  return logits_BxTxV, hidden_BxTxD
