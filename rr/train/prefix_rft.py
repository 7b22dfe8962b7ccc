"""Prefix-RFT (arXiv 2507.01679, docs/methods.md "Prefix-RFT"): rollouts that continue a demonstration prefix.

Two parts, both on only with config.rl.prefix_rollouts = k > 0:
- `Prefixer.sample`, the collector's sampling hook: of each group's G rollouts, G - k are the policy's own and the
  last k continue a prefix of the question's demonstration (the SFT target: format_completion + eos). A prefix is
  floor(l * |demo|) tokens, l ~ U[low_t, rl.prefix_high] per prefixed row, low_t on a cosine from
  rl.prefix_low_start (first step) to rl.prefix_low_end (last step), so the run leans on the demonstration less
  and less. The prefix tokens land in TrainBatch.prefix_mask, the continuation in policy_mask (rollout_batch).
- The "prefix" objective term on the prefix tokens: of the batch's prefix tokens, the rl.prefix_entropy_top share
  with the highest policy entropy (the forking tokens) are trained, with -A_i log pi ("advantage", the paper) or
  -log pi ("nll"); the rest of the demonstration only conditions the continuation.
"""

from __future__ import annotations

import fractions
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rr.config import ConfigError
from rr.data import format_completion, format_prompt
from rr.sampler.sampler import DEFAULT_PROMPT_BUCKETS
from rr.tasks import Example
from rr.train.objectives import TERMS, Forward, Parts, Term

PREFIX_KEY = 0x7072  # folded into a round's key for its prefixed rows, so they never repeat the own rows' draws
FRACTION_SLACK = 1e-9  # 0.7 * 10 is 7.000000000000001 and 0.29 * 100 is 28.999999999999996: both mean the integer
SHARE_DENOMINATOR = 1000  # rl.prefix_entropy_top is read as the nearest fraction p / q with q <= this (0.2 = 1/5)


# ------------------------------------------------------------------------------------------ the prefix lengths

def prefix_low(step: int, total_steps: int, start: float, end: float) -> float:
  """low_t: a cosine from `start` at step 0 to `end` at the last step (total_steps - 1), flat outside."""
  if total_steps <= 1:
    return float(start)
  progress = min(max(step, 0), total_steps - 1) / (total_steps - 1)
  return float(end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def prefix_fractions(key: jax.Array, count: int, low: float, high: float) -> np.ndarray:
  """`count` draws of l ~ U[low, high] from a numpy Generator seeded by the round's key (itself a function of
  (seed, step, round)), so a resumed run, and every process, draws the same."""
  seed = np.asarray(jax.random.key_data(key), np.uint32).reshape(-1).tolist()
  return np.random.default_rng([PREFIX_KEY, *seed]).uniform(low, high, size=count)


def prefix_length(fraction: float, demo_len: int, completion_width: int) -> int:
  """floor(l * |demo|), capped at |demo| - 1 (the eos that closes the demo is never given: the policy must
  decide to stop) and at C - 1 (a prefixed row keeps at least one column for the policy's own tokens)."""
  forced = math.floor(fraction * demo_len + FRACTION_SLACK)
  return max(0, min(forced, demo_len - 1, completion_width - 1))


def demonstration_ids(tokenizer, example: Example) -> list[int]:
  """The demonstration as the SFT trainer's target: format_completion(example) + eos. An example without a
  rationale (user data) still has "<think></think>answer"."""
  return tokenizer.encode(format_completion(example)) + [tokenizer.eos_id]


# ------------------------------------------------------------------------------------------ the sampling

class Prefixer:
  """The collector's prefix part: `demos[i]` is train question i's demonstration ids."""

  def __init__(self, rl, demos: Sequence[Sequence[int]], total_steps: int):
    self.rl, self.total_steps = rl, total_steps
    self.demos = [np.asarray(d, np.int32) for d in demos]

  def prefix_lengths(self, picked: np.ndarray, step: int, key: jax.Array) -> np.ndarray:
    """[len(picked) * k] prefix lengths of the prefixed rows, prompt-major (k = rl.prefix_rollouts)."""
    rl = self.rl
    low = prefix_low(step, self.total_steps, rl.prefix_low_start, rl.prefix_low_end)
    questions = np.repeat(np.asarray(picked), rl.prefix_rollouts)
    draws = prefix_fractions(key, len(questions), low, rl.prefix_high)
    return np.array([prefix_length(l, len(self.demos[i]), rl.max_new_tokens) for l, i in zip(draws, questions)],
                    np.int32)

  def sample(self, collector, params, picked: np.ndarray, step: int,
             key: jax.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(tokens [N, C], lengths [N], sampler log-probs [N, C], prefix lengths [N]), N = len(picked) * G,
    prompt-major with each group's k prefixed rows last. Two sampler calls: G - k completions of each prompt,
    and one continuation of each prompt + prefix (C new tokens, cut to the C - p columns left after the prefix).
    A prefixed row's log-probs are 0 on its prefix. Counts: sampled_tokens are the generated tokens the rows
    keep (a continuation's tokens past its cut were generated but are dropped, so neither trained nor counted),
    demo_tokens the prefix tokens given."""
    rl, picked = self.rl, np.asarray(picked)
    groups, group, forced, columns = len(picked), rl.group_size, rl.prefix_rollouts, rl.max_new_tokens
    own = collector.sampler(params, [collector.prompts[i] for i in picked], max_new_tokens=columns,
                            strategy=collector.strategy, rng=key, num_samples=group - forced)
    lengths = self.prefix_lengths(picked, step, key)
    questions = np.repeat(picked, forced)
    prefixes = [self.demos[i][:p] for i, p in zip(questions, lengths)]
    prefixed = collector.sampler(params, [list(collector.prompts[i]) + prefix.tolist()
                                  for i, prefix in zip(questions, prefixes)],
                                 max_new_tokens=columns, strategy=collector.strategy,
                                 rng=jax.random.fold_in(key, PREFIX_KEY), num_samples=1)
    tokens = np.full((groups, group, columns), collector.tokenizer.pad_id, np.int32)
    logprobs = np.zeros((groups, group, columns), np.float32)
    row_lengths = np.zeros((groups, group), np.int32)
    prefix_len = np.zeros((groups, group), np.int32)
    tokens[:, :group - forced] = np.asarray(own.tokens).reshape(groups, group - forced, columns)
    logprobs[:, :group - forced] = np.asarray(own.logprobs).reshape(groups, group - forced, columns)
    row_lengths[:, :group - forced] = np.asarray(own.lengths).reshape(groups, group - forced)
    kept_continuation = 0
    for row, (prefix, p) in enumerate(zip(prefixes, lengths)):
      g, j = row // forced, group - forced + row % forced
      kept = min(int(prefixed.lengths[row]), columns - p)
      tokens[g, j, :p] = prefix
      tokens[g, j, p:p + kept] = prefixed.tokens[row, :kept]
      logprobs[g, j, p:p + kept] = prefixed.logprobs[row, :kept]
      row_lengths[g, j], prefix_len[g, j] = p + kept, p
      kept_continuation += kept
    collector.count(sampled_tokens=int(np.sum(own.lengths)) + kept_continuation, demo_tokens=int(lengths.sum()))
    n = groups * group
    return tokens.reshape(n, columns), row_lengths.reshape(n), logprobs.reshape(n, columns), prefix_len.reshape(n)


def make_prefixer(config, tokenizer, examples: Sequence[Example], width: int,
                  longest_prompt: int = DEFAULT_PROMPT_BUCKETS[-1]) -> Prefixer | None:
  """The collector's prefix part for config.rl.prefix_rollouts > 0, or None when it is 0. Every train question's
  demonstration is encoded here, so a prompt + longest possible prefix the sampler cannot take (over
  `longest_prompt`, the trainer's Sampler's largest prompt bucket) is a ConfigError before any step. `width` is
  the trained rows' and needs no check: they hold the plain prompt and at most C completion tokens."""
  rl = config.rl
  if not rl.prefix_rollouts:
    return None
  if rl.prefix_loss == "advantage" and rl.advantage == "ppo":
    raise ConfigError("config.rl.prefix_loss='advantage' needs a group advantage estimator (grpo, drgrpo, rloo, "
                      "reinforce++), not config.rl.advantage='ppo': PPO's advantages cover the policy's own tokens "
                      "only, so the prefix would train with zero advantage; use config.rl.prefix_loss='nll'")
  if rl.prefix_entropy_top <= 0:
    raise ConfigError(f"config.rl.prefix_entropy_top={rl.prefix_entropy_top} trains no prefix token; set it in "
                      "(0, 1] (0.2 is the paper's), or config.rl.prefix_rollouts=0 to turn Prefix-RFT off")
  demos = []
  for example in examples:
    demo = demonstration_ids(tokenizer, example)
    prompt = tokenizer.encode(format_prompt(example.question, tokenizer))
    longest = len(prompt) + prefix_length(rl.prefix_high, len(demo), rl.max_new_tokens)
    if longest > longest_prompt:
      raise ConfigError(f"config.rl.prefix_high={rl.prefix_high} makes the prompt + demonstration prefix of train "
                        f"question {example.question[:60]!r} up to {longest} tokens, more than the sampler's longest "
                        f"prompt bucket ({longest_prompt}); lower config.rl.prefix_high or config.rl.max_new_tokens")
    demos.append(demo)
  return Prefixer(rl, demos, config.train.steps)


# ------------------------------------------------------------------------------------------ the term

def top_share_mask(values_BxT: jax.Array, mask_BxT: jax.Array, share: float) -> jax.Array:
  """float32 [B, T]: 1 on the ceil(share * n) masked entries with the highest values (n = masked entries), 0
  elsewhere; ties go to the earlier position, so exactly that many are chosen. jit-safe: a fixed-size stable sort
  with the unmasked entries pushed past the end, and the count in exact integer arithmetic (share as p / q)."""
  ratio = fractions.Fraction(share).limit_denominator(SHARE_DENOMINATOR)
  top, per = ratio.numerator, ratio.denominator
  flat = jax.lax.stop_gradient(values_BxT).astype(jnp.float32).reshape(-1)
  keep = mask_BxT.reshape(-1) > 0
  count = keep.sum().astype(jnp.int32)
  chosen = (count // per) * top + ((count % per) * top + per - 1) // per  # ceil(count * top / per), no overflow
  order = jnp.argsort(jnp.where(keep, -flat, jnp.inf), stable=True)
  rank = jnp.zeros_like(order).at[order].set(jnp.arange(order.shape[0], dtype=order.dtype))
  return (keep & (rank < chosen)).astype(jnp.float32).reshape(mask_BxT.shape)


def trained_prefix_mask(batch, parts: Parts) -> jax.Array:
  """The prefix tokens the term may train on: truncated rows dropped with rl.mask_truncated, as from the policy's
  (the row's advantage is the truncated row's too); batch_totals' "prefix" count is the same."""
  mask = batch.prefix_mask.astype(jnp.float32)
  if parts.loss_cfg.mask_truncated:
    mask = mask * batch.has_eos.astype(jnp.float32)[:, None]
  return mask


@TERMS.register("prefix")
def prefix_term(config, parts: Parts) -> Term:
  """rl.prefix_weight * the mean over the selected prefix tokens of -A_i log pi (rl.prefix_loss "advantage") or
  -log pi ("nll"), docs/methods.md "Prefix-RFT". Selected: the rl.prefix_entropy_top share of the batch's prefix
  tokens with the highest entropy (sg), per batch, or per micro-batch under train.micro_batches. log pi is
  Forward.logp, at the sampling temperature, as the continuation's policy term reads it (at T = 1 "nll" is the SFT
  loss). Under micro-batches the share is by prefix tokens, not selected ones (the selection depends on the
  params), so the micro-batches' sum is the whole batch's mean exactly when prefix_entropy_top = 1."""
  rl = config.rl
  top, kind, weight = rl.prefix_entropy_top, rl.prefix_loss, rl.prefix_weight

  def term(fwd: Forward):
    zero = jnp.zeros((), jnp.float32)
    batch = fwd.batch
    if batch.prefix_mask is None:  # no row of this batch continued a prefix
      return zero, {"prefix_tokens": zero, "prefix_selected": zero, "prefix_loss": zero}
    mask = trained_prefix_mask(batch, parts)
    selected = top_share_mask(fwd.entropy, mask, top)
    logp = jnp.where(selected > 0, fwd.logp.astype(jnp.float32), 0.0)
    if kind == "advantage":
      advantages = batch.advantages if batch.advantages.ndim == 2 else batch.advantages[:, None]
      loss_BxT = -advantages * logp
    else:
      loss_BxT = -logp
    chosen = selected.sum()
    loss = jnp.where(selected > 0, loss_BxT, 0.0).sum() / jnp.maximum(chosen, 1.0)
    count = mask.sum()
    return (weight * loss * fwd.share("prefix", count),
            {"prefix_tokens": count, "prefix_selected": chosen, "prefix_loss": jax.lax.stop_gradient(loss)})

  return term
