"""The jittable core of sampling: one prefill call, then one lax.while_loop.

`generate` is a pure function of arrays (the Sampler jits it once per
(strategy, max_new_tokens, num_samples) and jax.jit caches it per prompt bucket
and batch bucket). Prompts arrive left-padded to a common length P, so the last
prompt token of every row sits at index P-1 and the first new token is chosen
from the prefill logits at that index. Each prompt is prefilled once and its
cache repeated for its `num_samples` rows (prompt-major), so n samples cost one
prefill, not n.

Every decode step feeds the previous token to the model (T=1), writing one slot
of a preallocated cache of P + max_new_tokens slots. A row stops at its first
eos; afterwards it emits pad with log-prob 0. The loop ends when every row has
stopped or max_new_tokens tokens were made (`generate_with_steps` also returns
how many decode steps ran), and the prompt costs only its bucket's length P.
"""

from typing import Any, Callable

import jax
import jax.numpy as jnp

from rr.models import Decoder, ModelConfig, init_cache, repeat_rows


def prefill(cfg: ModelConfig, params, tokens_BxP: jax.Array, positions_BxP: jax.Array,
            cache_len: int) -> tuple[jax.Array, dict]:
  """Runs the left-padded prompts through the model, filling a fresh cache of cache_len slots.

  Returns the logits at the last prompt index (float32 BxV) and the cache.
  """
  cache = init_cache(cfg, tokens_BxP.shape[0], cache_len)
  logits_BxPxV, cache = Decoder(cfg).apply({"params": params}, tokens_BxP, positions_BxP, cache)
  return logits_BxPxV[:, -1].astype(jnp.float32), cache


def generate(params, tokens_BpxP: jax.Array, positions_BpxP: jax.Array, prompt_ids_Bp: jax.Array,
             prompt_is_real_Bp: jax.Array, rng: jax.Array, *, cfg: ModelConfig, strategy,
             max_new_tokens: int, num_samples: int, eos_id: int, pad_id: int,
             constrain: Callable[[Any], Any] = lambda tree: tree) -> dict:
  """generate_with_steps' samples (what the Sampler fetches), without the step count."""
  return generate_with_steps(params, tokens_BpxP, positions_BpxP, prompt_ids_Bp, prompt_is_real_Bp, rng, cfg=cfg,
                             strategy=strategy, max_new_tokens=max_new_tokens, num_samples=num_samples,
                             eos_id=eos_id, pad_id=pad_id, constrain=constrain)[0]


def generate_with_steps(params, tokens_BpxP: jax.Array, positions_BpxP: jax.Array, prompt_ids_Bp: jax.Array,
                        prompt_is_real_Bp: jax.Array, rng: jax.Array, *, cfg: ModelConfig, strategy,
                        max_new_tokens: int, num_samples: int, eos_id: int, pad_id: int,
                        constrain: Callable[[Any], Any] = lambda tree: tree) -> tuple[dict, jax.Array]:
  """Samples max_new_tokens for num_samples rows per prompt; B = Bp * num_samples rows.

  prompt_ids_Bp: the caller's index of each prompt; row j of prompt i draws from a
    key derived from (rng, i * num_samples + j), so a row's sample does not depend on
    which other prompts share its batch or bucket.
  prompt_is_real_Bp: False on rows that only pad the batch up to a bucket; they start stopped.
  constrain: applied to batch-leading state (a with_sharding_constraint under a mesh).

  Returns (dict of B-leading arrays: tokens (int32 BxN), logprobs, model_logprobs
  (float32 BxN), lengths (int32 B, generated tokens incl. eos); the number of
  decode steps the loop ran, int32: max(lengths) once every row has stopped,
  max_new_tokens otherwise).
  """
  model = Decoder(cfg)
  prompt_len = tokens_BpxP.shape[1]
  logits_BpxV, cache = prefill(cfg, params, tokens_BpxP, positions_BpxP,
                               prompt_len + max_new_tokens)
  # Position of the next token: one past the prompt's last position.
  next_pos_Bp = jnp.max(positions_BpxP, axis=1) + 1
  row_ids_Bp = prompt_ids_Bp[:, None] * num_samples + jnp.arange(num_samples)[None, :]
  logits_BxV, cache, next_pos_B, stopped_B = constrain(repeat_rows(
      (logits_BpxV, cache, next_pos_Bp, ~prompt_is_real_Bp), num_samples))
  row_ids_B = constrain(row_ids_Bp.reshape(-1))
  batch = logits_BxV.shape[0]

  def emit(state: dict, logits_BxV: jax.Array) -> dict:
    """Chooses this step's token for every live row and records it at column `step`."""
    step = state["step"]
    keys_B = jax.vmap(lambda row: jax.random.fold_in(jax.random.fold_in(rng, row), step))(row_ids_B)
    token_B = jax.vmap(lambda logits_V, key: strategy.choose(logits_V[None], key)[0])(
        logits_BxV, keys_B)
    pick = lambda logp_BxV: jnp.take_along_axis(logp_BxV, token_B[:, None], axis=1)[:, 0]
    logprob_B = pick(strategy.log_probs(logits_BxV))
    model_logprob_B = pick(jax.nn.log_softmax(logits_BxV, axis=-1))
    stopped_B = state["stopped"]
    token_B = jnp.where(stopped_B, pad_id, token_B)
    write = lambda buf_BxN, col_B: jax.lax.dynamic_update_slice(
        buf_BxN, col_B[:, None].astype(buf_BxN.dtype), (jnp.int32(0), step))
    return dict(
        state,
        step=step + 1,
        token=token_B,
        tokens=write(state["tokens"], token_B),
        logprobs=write(state["logprobs"], jnp.where(stopped_B, 0.0, logprob_B)),
        model_logprobs=write(state["model_logprobs"], jnp.where(stopped_B, 0.0, model_logprob_B)),
        lengths=state["lengths"] + (~stopped_B).astype(jnp.int32),
        stopped=stopped_B | (token_B == eos_id),
    )

  def keep_going(state: dict) -> jax.Array:
    return (state["step"] < max_new_tokens) & ~jnp.all(state["stopped"])

  def advance(state: dict) -> dict:
    """Feeds the token just emitted (at its position) to the model: next logits, cache + 1 slot."""
    positions_Bx1 = (state["next_pos"] + state["step"] - 1)[:, None]
    logits_Bx1xV, cache = model.apply({"params": params}, state["token"][:, None],
                                      positions_Bx1, state["cache"])
    return dict(state, cache=cache, logits=logits_Bx1xV[:, -1].astype(jnp.float32))

  def decode_step(state: dict) -> dict:
    # The model and the strategy appear once in the loop (compile time on XLA:CPU), and
    # the cond skips the forward pass whose logits nobody would read.
    state = emit(state, state["logits"])
    return jax.lax.cond(keep_going(state), advance, lambda s: s, state)

  state = dict(
      step=jnp.zeros((), jnp.int32),
      cache=cache,
      logits=logits_BxV,
      next_pos=next_pos_B,
      token=jnp.full((batch,), pad_id, jnp.int32),
      tokens=jnp.full((batch, max_new_tokens), pad_id, jnp.int32),
      logprobs=jnp.zeros((batch, max_new_tokens), jnp.float32),
      model_logprobs=jnp.zeros((batch, max_new_tokens), jnp.float32),
      lengths=jnp.zeros((batch,), jnp.int32),
      stopped=stopped_B,
  )
  state = jax.lax.while_loop(keep_going, decode_step, state)
  return {name: state[name] for name in ("tokens", "logprobs", "model_logprobs", "lengths")}, state["step"]
