"""rr.models.shared_prompt_forward: each group's prompt computed once, the same function as a plain forward.

Expectations come from the plain `Decoder.apply` on the same batch; the batch is built here by hand in the
rollout layout (G rows per group with identical prompt columns [0, P), prompts left-padded with position -1,
completions from column P on, right padded).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from rr.models import Decoder, init_params, model_config, repeat_rows, shared_prompt_forward

VOCAB = 29
CFG = model_config("nano", VOCAB)  # 2 layers, 4 query heads over 2 kv heads
MODEL = Decoder(CFG)
GROUP, PROMPT_WIDTH, COMPLETION_WIDTH = 3, 5, 4
PROMPTS = [[3, 4, 5], [6, 7, 8, 9, 10]]  # one left-padded, one filling all P columns
COMPLETION_LENGTHS = [4, 2, 1, 3, 4, 2]  # right padding after each


def random_params(seed=0):
  """Params of the model's tree, drawn with numpy large enough that logits are O(1) (init_params' are tiny)."""
  abstract = jax.eval_shape(lambda k: init_params(CFG, k), jax.random.key(0))
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    noise = rng.normal(size=leaf.shape)
    return jnp.asarray(1.0 + 0.1 * noise if "scale" in jax.tree_util.keystr(path) else 0.3 * noise, leaf.dtype)

  return jax.tree_util.tree_map_with_path(draw, abstract)


def rollout_layout(prompts, completion_lengths, seed=0):
  """tokens, positions [N, P + C]: row r continues prompt r // GROUP, its completion starts at column P."""
  rng = np.random.default_rng(seed)
  n, width = len(completion_lengths), PROMPT_WIDTH + COMPLETION_WIDTH
  tokens = np.zeros((n, width), np.int32)  # pad id 0
  positions = np.full((n, width), -1, np.int32)
  for row, length in enumerate(completion_lengths):
    prompt = prompts[row // GROUP]
    tokens[row, PROMPT_WIDTH - len(prompt):PROMPT_WIDTH] = prompt
    tokens[row, PROMPT_WIDTH:PROMPT_WIDTH + length] = rng.integers(1, VOCAB, size=length)
    positions[row, PROMPT_WIDTH - len(prompt):PROMPT_WIDTH + length] = np.arange(len(prompt) + length)
  return tokens, positions


def plain_forward(params, tokens, positions):
  logits, _, hidden = MODEL.apply({"params": params}, tokens, positions, return_hidden=True)
  return logits, hidden


@functools.partial(jax.jit, static_argnums=3)
def jitted_shared(params, tokens, positions, shared):
  return shared_prompt_forward(MODEL, params, tokens, positions, shared)


jitted_plain = jax.jit(plain_forward)
PARAMS = random_params()
TOKENS, POSITIONS = rollout_layout(PROMPTS, COMPLETION_LENGTHS)
REAL = POSITIONS >= 0  # a padding query attends to nothing real, and nothing attends to it


def test_the_batch_has_the_rollout_layout():
  assert TOKENS.shape == (len(PROMPTS) * GROUP, PROMPT_WIDTH + COMPLETION_WIDTH)
  for g in range(len(PROMPTS)):
    rows = slice(g * GROUP, (g + 1) * GROUP)
    assert (TOKENS[rows, :PROMPT_WIDTH] == TOKENS[g * GROUP, :PROMPT_WIDTH]).all()
    assert (POSITIONS[rows, :PROMPT_WIDTH] == POSITIONS[g * GROUP, :PROMPT_WIDTH]).all()
  assert (POSITIONS[0, :2] == -1).all() and (POSITIONS[1, -2:] == -1).all()  # left and right padding


def test_repeat_rows_repeats_each_row_prompt_major_and_keeps_scalars():
  tree = {"k": [jnp.arange(6).reshape(2, 3)], "end": jnp.int32(5)}
  out = repeat_rows(tree, 3)
  np.testing.assert_array_equal(out["k"][0], np.repeat(np.arange(6).reshape(2, 3), 3, axis=0))
  assert out["end"].shape == () and int(out["end"]) == 5
  assert repeat_rows(tree, 1) is tree


def test_logits_and_hidden_equal_the_plain_forward_at_every_real_position():
  logits, hidden = jitted_plain(PARAMS, TOKENS, POSITIONS)
  logits_s, hidden_s = jitted_shared(PARAMS, TOKENS, POSITIONS, (GROUP, PROMPT_WIDTH))
  assert logits_s.shape == logits.shape and hidden_s.shape == hidden.shape
  assert float(np.abs(np.asarray(logits)[REAL]).max()) > 1.0  # the comparison below is not of near-zeros
  np.testing.assert_allclose(np.asarray(logits_s)[REAL], np.asarray(logits)[REAL], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(np.asarray(hidden_s)[REAL], np.asarray(hidden)[REAL], rtol=1e-5, atol=1e-5)
  # Not compared: padding positions see no key, so they average every slot of their call (the prompt pass's
  # cache is still empty past P) and differ; no real position and no loss reads them.


def test_the_gradient_equals_the_plain_forwards():
  weights = jnp.asarray(np.random.default_rng(1).normal(size=(*TOKENS.shape, VOCAB)) * REAL[..., None],
                        jnp.float32)
  hidden_weights = jnp.asarray(np.random.default_rng(2).normal(size=(*TOKENS.shape, CFG.hidden_size))
                               * REAL[..., None], jnp.float32)

  def loss(forward):
    def scalar(params):
      logits, hidden = forward(params)
      return (jax.nn.log_softmax(logits) * weights).sum() + (hidden * hidden_weights).sum()
    return jax.jit(jax.value_and_grad(scalar))

  value, grads = loss(lambda p: plain_forward(p, TOKENS, POSITIONS))(PARAMS)
  value_s, grads_s = loss(lambda p: shared_prompt_forward(MODEL, p, TOKENS, POSITIONS,
                                                          (GROUP, PROMPT_WIDTH)))(PARAMS)
  np.testing.assert_allclose(value_s, value, rtol=1e-5)
  for (path, g), g_s in zip(jax.tree_util.tree_leaves_with_path(grads), jax.tree.leaves(grads_s)):
    scale = float(np.abs(g).max())
    assert scale > 0, jax.tree_util.keystr(path)
    np.testing.assert_allclose(g_s, g, rtol=1e-5, atol=1e-5 * scale, err_msg=jax.tree_util.keystr(path))


def test_no_sharing_and_groups_of_one_are_the_plain_forward():
  logits, hidden = plain_forward(PARAMS, TOKENS, POSITIONS)
  for shared in (None, (1, PROMPT_WIDTH)):
    logits_s, hidden_s = shared_prompt_forward(MODEL, PARAMS, TOKENS, POSITIONS, shared)
    np.testing.assert_array_equal(logits_s, logits)
    np.testing.assert_array_equal(hidden_s, hidden)


def test_rows_that_do_not_share_their_prompt_give_other_logits():
  # Row 1 of group 0 gets another prompt of the same length: the shared forward reads only row 0's prompt
  # columns, so row 1 is scored as if it had row 0's prompt, which the plain forward does not.
  tokens, positions = TOKENS.copy(), POSITIONS.copy()
  tokens[1, PROMPT_WIDTH - 3:PROMPT_WIDTH] = [11, 12, 13]
  logits, _ = jitted_plain(PARAMS, tokens, positions)
  logits_s, _ = jitted_shared(PARAMS, tokens, positions, (GROUP, PROMPT_WIDTH))
  real = positions >= 0
  rows = np.arange(len(tokens))[:, None] != 1
  np.testing.assert_allclose(np.asarray(logits_s)[real & rows], np.asarray(logits)[real & rows], rtol=1e-5,
                             atol=1e-5)
  for cols in (slice(None, PROMPT_WIDTH), slice(PROMPT_WIDTH, None)):  # its prompt and its completion
    differ = np.abs(np.asarray(logits_s)[1, cols] - np.asarray(logits)[1, cols])[real[1, cols]]
    assert differ.max() > 1e-2
  # ... and it is row 0's prompt that row 1 was given.
  np.testing.assert_allclose(np.asarray(logits_s)[1, :PROMPT_WIDTH][real[1, :PROMPT_WIDTH]],
                             np.asarray(logits)[0, :PROMPT_WIDTH][real[0, :PROMPT_WIDTH]], rtol=1e-5, atol=1e-5)
