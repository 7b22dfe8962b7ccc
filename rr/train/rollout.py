"""Rollouts to train batches: prompt + sampled completion per row, right padded, with the sampler's record.

Layout (the SFT convention): row = prompt tokens then completion tokens, positions 0..n-1, -1 on padding;
`mask[t] = 1` when `tokens[t + 1]` is a completion token, so the log-prob read at `t` is that token's.
`sampler_logp[t]` holds the sampler's log-prob (model at temperature 1) of the same token, so the trainer
can report how far its recomputed log-probs are from what the sampler saw.
"""

from __future__ import annotations

import numpy as np


def rollout_batch(prompts: list[list[int]], num_samples: int, tokens_NxC: np.ndarray, lengths_N: np.ndarray,
                  sampler_logp_NxC: np.ndarray, eos_id: int, pad_id: int, width: int) -> dict[str, np.ndarray]:
  """Builds the [N, width] arrays of one RL step; rows are prompt-major like the sampler's output."""
  n = tokens_NxC.shape[0]
  tokens = np.full((n, width), pad_id, np.int32)
  positions = np.full((n, width), -1, np.int32)
  mask = np.zeros((n, width), np.float32)
  sampler_logp = np.zeros((n, width), np.float32)
  has_eos = np.zeros((n,), bool)
  for row in range(n):
    prompt = prompts[row // num_samples]
    length = int(lengths_N[row])
    completion = tokens_NxC[row, :length]
    sequence = np.concatenate([np.asarray(prompt, np.int32), completion.astype(np.int32)])
    if len(sequence) > width:
      raise ValueError(f"rollout row {row} has {len(sequence)} tokens, more than the batch width {width}")
    tokens[row, :len(sequence)] = sequence
    positions[row, :len(sequence)] = np.arange(len(sequence))
    start = len(prompt) - 1  # the log-prob of completion token j is read at start + j
    mask[row, start:start + length] = 1.0
    sampler_logp[row, start:start + length] = sampler_logp_NxC[row, :length]
    has_eos[row] = length > 0 and completion[-1] == eos_id
  return {"tokens": tokens, "positions": positions, "mask": mask, "sampler_logp": sampler_logp,
          "has_eos": has_eos}
