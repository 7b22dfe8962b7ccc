"""The typed batch every objective reads (after simply's RL batch): one structure for SFT data and rollouts.

Token layout: `tokens[b, t]` with `positions` 0..n-1 on real tokens and -1 on padding. The masks are aligned to
the targets: `mask[b, t] = 1` when `tokens[b, t + 1]` is a token of that kind, so the log-prob read at `t` is
that token's (rr.losses.sequence_log_probs).
  policy_mask  tokens the policy sampled: the policy-gradient, KL and entropy terms read these
  demo_mask    demonstration tokens (SFT data): the NLL term reads these
  prefix_mask  Prefix-RFT: the demonstration prefix a rollout was forced to continue (the "prefix" term)
  guided_mask  Guide: tokens of rollouts sampled with a hint in the prompt, trained without it (the "guide" term);
               a row is in policy_mask or in guided_mask, never both
With SFT packing (data.packing) a row holds several examples: positions restart at 0 in each and `segment_ids`
numbers them (-1 on padding), so attention stays inside each example (rr.models.Decoder).
A field a trainer does not use stays None (an empty pytree leaf), so the compiled step only carries what its
terms read. Rows of a rollout batch are prompt-major: rows g*G .. g*G+G-1 are group g's completions, and every
completion starts at the same column (`rollout_batch`), which the shared-prompt forward relies on.
"""

from __future__ import annotations

from typing import Optional

import flax.struct
import jax
import numpy as np

from rr import sharding

Array = Optional[jax.Array]  # np.ndarray on the host, jax.Array on the mesh


@flax.struct.dataclass
class TrainBatch:
  tokens: Array  # [B, T] int32
  positions: Array  # [B, T] int32, -1 on padding
  segment_ids: Array = None  # [B, T] int32: which example of a packed SFT row each token is, -1 on padding
  policy_mask: Array = None  # [B, T] float32: tokens[t + 1] was sampled by the policy
  demo_mask: Array = None  # [B, T] float32: tokens[t + 1] is a demonstration token
  prefix_mask: Array = None  # [B, T] float32: tokens[t + 1] is a forced demonstration prefix (Prefix-RFT)
  guided_mask: Array = None  # [B, T] float32: tokens[t + 1] was sampled with a hint in the prompt (Guide)
  behaviour_logp: Array = None  # [B, T] the sampler's log-prob of tokens[t + 1] under what it sampled from
  has_eos: Array = None  # [B] bool: the completion ended with EOS (not cut at max_new_tokens)
  group_ids: Array = None  # [B] int32: which prompt's group the row belongs to (row // G)
  rewards: Array = None  # [B] float32 combined reward, NaN where a reward failed
  valid: Array = None  # [B] float32: 1 where every reward scored the row
  # Filled on the device before the update (rr.train.advantages.make_prepare), never on the host:
  advantages: Array = None  # [B] per completion (group estimators) or [B, T] per token (GAE)
  old_logp: Array = None  # [B, T] log-probs of the params that sampled, when the update needs them (mu > 1, PPO)
  kl_penalty: Array = None  # [B] beta * sequence KL taken off the reward (rl.kl_mode = "reward")
  returns: Array = None  # [B, T] PPO value targets
  old_values: Array = None  # [B, T] PPO values at sampling time
  value_mask: Array = None  # [B, T] PPO: tokens of rows whose reward is valid
  # Distillation (docs/methods.md, "Distillation"), filled on the host by the trainers that use them:
  rationale_mask: Array = None  # [B, T] distilling step-by-step: the demo tokens of rows of the rationale task
  teacher_topk_ids: Array = None  # [B, T, k] int32 cached top-k teacher token ids at each position
  teacher_topk_logits: Array = None  # [B, T, k] float32 their teacher logits
  privileged_tokens: Array = None  # [B, T'] the self-teacher's rows: gold context + prompt, then the same
  privileged_positions: Array = None  # [B, T'] completion from column T' - completion_width on (see Parts)


def put_batch(batch: TrainBatch, mesh: jax.sharding.Mesh) -> TrainBatch:
  """Lays a host batch out over the mesh's data axis; with several processes each feeds its own rows."""
  batch_sh = sharding.batch_sharding(mesh)
  if jax.process_count() == 1:
    return jax.device_put(batch, batch_sh)
  index, count = jax.process_index(), jax.process_count()

  def local(v):
    rows = v.shape[0] // count
    return jax.make_array_from_process_local_data(batch_sh, v[index * rows:(index + 1) * rows])

  return jax.tree.map(local, batch)


def rollout_batch(prompts: list[list[int]], num_samples: int, tokens_NxC: np.ndarray, lengths_N: np.ndarray,
                  sampler_logp_NxC: np.ndarray, eos_id: int, pad_id: int, width: int,
                  prefix_len_N: np.ndarray | None = None, guided_N: np.ndarray | None = None) -> TrainBatch:
  """The [N, width] host batch of one RL step from the sampler's output (rows prompt-major like it).

  Each row: its prompt left-padded to `width - C` columns, then the completion from that column on, right
  padded (C = the sampler's max_new_tokens). Rewards and advantages are added by the collector and the
  device-side prepare step. `prefix_len_N` (Prefix-RFT) counts a row's leading completion tokens that are a forced
  demonstration prefix: they go to prefix_mask, the rest to policy_mask. `guided_N` (Guide) marks rows sampled
  with a hint: their completion tokens go to guided_mask instead of policy_mask. Either mask is None when no row
  has one.
  """
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
  prefix_mask = guided_mask = None
  if prefix_len_N is not None and np.any(prefix_len_N > 0):
    columns = np.arange(width)[None, :] - (prompt_width - 1)  # completion token index read at each column
    prefix_mask = (mask * (columns < np.asarray(prefix_len_N)[:, None])).astype(np.float32)
    mask = mask - prefix_mask
  if guided_N is not None and np.any(guided_N):
    guided = np.asarray(guided_N, bool)[:, None]
    guided_mask = np.where(guided, mask, 0.0).astype(np.float32)
    mask = np.where(guided, 0.0, mask).astype(np.float32)
  return TrainBatch(tokens=tokens, positions=positions, policy_mask=mask, behaviour_logp=sampler_logp,
                    has_eos=has_eos, group_ids=(np.arange(n) // num_samples).astype(np.int32),
                    prefix_mask=prefix_mask, guided_mask=guided_mask)


def sft_batch(arrays: dict[str, np.ndarray]) -> TrainBatch:
  """An SFT batch (rr.data.SFTBatches: tokens, positions, loss_mask, segment_ids when packed) as a TrainBatch of
  demonstration tokens."""
  return TrainBatch(tokens=arrays["tokens"], positions=arrays["positions"], demo_mask=arrays["loss_mask"],
                    segment_ids=arrays.get("segment_ids"))
