"""SFT sequence packing (data.packing): several examples per row, attention kept inside each by segment ids.

The packed batch must train exactly as the same examples unpacked (per-token NLLs, loss and gradient), an epoch
must still visit every example once, and short examples must leave far less padding."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rr import models, train
from rr.config import ConfigError, apply_overrides, base_config, load_config
from rr.data import CharTokenizer, SFTBatches, format_completion, format_prompt
from rr.data.sft_batches import pack
from rr.losses import completion_nll
from rr.tasks import Example
from rr.train.batch import sft_batch
from rr.train.metrics import read_metrics
from rr.train.objectives import Parts, make_objective

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def short_examples(n=40, seed=0):
  """Examples of 6 to 52 tokens, as a user's JSONL of short answers would be."""
  rng = np.random.default_rng(seed)
  letters = list("abcdefghij")
  return [Example("".join(rng.choice(letters, rng.integers(1, 20))), "".join(rng.choice(letters, rng.integers(0, 25))),
                  "".join(rng.choice(letters, rng.integers(1, 6)))) for _ in range(n)]


def encoded(tok, example):
  """(prompt ids, completion ids with eos) of one example, from the tokenizer alone."""
  return tok.encode(format_prompt(example.question, tok)), tok.encode(format_completion(example)) + [tok.eos_id]


def test_pack_fills_rows_best_fit_decreasing_and_places_every_item_once():
  rng = np.random.default_rng(1)
  lengths = rng.integers(1, 40, 300).tolist()
  capacity = 100
  rows = pack(lengths, capacity)
  assert sorted(i for row in rows for i in row) == list(range(300))
  fills = sorted((sum(lengths[i] for i in row) for row in rows), reverse=True)
  assert fills[0] <= capacity
  assert all(fill > capacity - max(lengths) for fill in fills[:-1])  # a row opens only when none has room
  assert len(rows) >= -(-sum(lengths) // capacity)
  for row in rows:  # longest first within a row, as it was placed
    assert [lengths[i] for i in row] == sorted((lengths[i] for i in row), reverse=True)


def test_packed_rows_hold_whole_examples_with_their_own_positions_segments_and_targets():
  data, tok = short_examples(), CharTokenizer()
  batches = SFTBatches(data, tok, batch_size=4, max_len=128, seed=0, packing=True)
  again = SFTBatches(data, tok, batch_size=4, max_len=128, seed=0, packing=True)
  asked_backwards = {step: again.batch(step) for step in reversed(range(6))}  # as a resumed run would ask
  for step in range(6):
    batch = batches.batch(step)
    assert set(batch) == {"tokens", "positions", "loss_mask", "segment_ids"}
    for key in batch:
      np.testing.assert_array_equal(batch[key], asked_backwards[step][key])
    rows = batches.packed_rows(step)
    assert len(rows) == 4 and batch["tokens"].shape == (4, 128) and batch["segment_ids"].dtype == np.int32
    np.testing.assert_array_equal(batches.example_indices(step), [i for row in rows for i in row])
    for r, row in enumerate(rows):
      start = 0
      for s, i in enumerate(row):
        prompt, completion = encoded(tok, data[i])
        end = start + len(prompt) + len(completion)
        np.testing.assert_array_equal(batch["tokens"][r, start:end], prompt + completion)
        np.testing.assert_array_equal(batch["positions"][r, start:end], np.arange(end - start))
        np.testing.assert_array_equal(batch["segment_ids"][r, start:end], s)
        mask = batch["loss_mask"][r, start:end]  # mask[t] weights the prediction of tokens[start + t + 1]
        assert mask[:len(prompt) - 1].sum() == 0 and mask[-1] == 0  # no prompt target, nothing past the eos
        np.testing.assert_array_equal(batch["tokens"][r, start + 1:end][mask[:-1] == 1], completion)
        start = end
      assert (batch["tokens"][r, start:] == tok.pad_id).all() and (batch["positions"][r, start:] == -1).all()
      assert (batch["segment_ids"][r, start:] == -1).all() and batch["loss_mask"][r, start:].sum() == 0
  other_seed = SFTBatches(data, tok, batch_size=4, max_len=128, seed=1, packing=True)
  assert any(not np.array_equal(batches.batch(s)["tokens"], other_seed.batch(s)["tokens"]) for s in range(3))


def test_each_epoch_of_packed_batches_visits_every_example_once():
  data, tok = short_examples(), CharTokenizer()
  batches = SFTBatches(data, tok, batch_size=3, max_len=128, seed=3, packing=True)
  n = len(data)
  assert batches.num_units < n and batches.steps_per_epoch == batches.num_units / 3
  stream = []
  step = 0
  while len(stream) < 3 * n:
    indices = batches.example_indices(step)
    questions = [tok.decode(batches.batch(step)["tokens"][r]).split("<eos>") for r in range(3)]
    assert sorted(q.split("\n", 1)[0] for row in questions for q in row if "\n" in q) == sorted(
        data[i].question for i in indices)  # the rows hold exactly the examples example_indices names
    stream += indices.tolist()
    step += 1
  epochs = [stream[e * n:(e + 1) * n] for e in range(3)]
  for epoch in epochs:
    assert sorted(epoch) == list(range(n))
  assert epochs[0] != epochs[1]  # the packed rows come in a fresh order each epoch


def test_packing_cuts_the_padding_of_short_examples():
  data, tok = short_examples(n=96, seed=2), CharTokenizer()
  plain = SFTBatches(data, tok, batch_size=8, max_len=256, seed=0)
  packed = SFTBatches(data, tok, batch_size=8, max_len=256, seed=0, packing=True)
  real_tokens = sum(len(p) + len(c) for p, c in (encoded(tok, e) for e in data))
  count = lambda batches, steps, real: sum(int(((batches.batch(s)["positions"] >= 0) == real).sum()) for s in steps)
  assert count(plain, range(12), True) == real_tokens  # one epoch: 12 steps of 8 rows
  plain_padding = count(plain, range(12), False)
  epochs = 8 // np.gcd(packed.num_units, 8)  # whole epochs of packed rows end at a step's end
  steps = range(epochs * packed.num_units // 8)
  assert count(packed, steps, True) == epochs * real_tokens
  packed_padding = count(packed, steps, False) / epochs
  print(f"padded tokens per epoch: {plain_padding} unpacked (96 rows), {packed_padding:.0f} packed "
        f"({packed.num_units} rows) for {real_tokens} real tokens")
  assert packed_padding < plain_padding / 4
  assert packed.num_units <= real_tokens // (256 - packed.max_example_len) + 1  # each row but one nearly full


@pytest.fixture(scope="module")
def nano():
  """(tokenizer, model, params, logits(params, tokens, positions, segment_ids or None), jitted)."""
  tok = CharTokenizer()
  cfg = models.model_config("nano", vocab_size=tok.vocab_size)
  model = models.Decoder(cfg)
  logits = jax.jit(lambda p, tokens, positions, segment_ids: model.apply({"params": p}, tokens, positions,
                                                                         segment_ids_BxT=segment_ids)[0])
  return tok, model, models.init_params(cfg, jax.random.key(0)), logits


def token_nlls(logits_BxTxV, tokens_BxT, mask_BxT):
  """Per-target NLLs in row-major order, by numpy: -log softmax(logits[b, t])[tokens[b, t + 1]] where mask[b, t]."""
  logits = np.asarray(logits_BxTxV, np.float64)[:, :-1]
  logp = logits - logits.max(-1, keepdims=True)
  logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
  nll = -np.take_along_axis(logp, np.asarray(tokens_BxT)[:, 1:, None], -1)[..., 0]
  return nll[np.asarray(mask_BxT)[:, :-1] == 1]


def test_packed_batch_has_the_unpacked_per_token_nlls_loss_and_gradient(nano):
  tok, model, params, logits = nano
  data = short_examples()
  batches = SFTBatches(data, tok, batch_size=4, max_len=128, seed=0, packing=True)
  packed = batches.batch(0)
  indices = batches.example_indices(0)
  assert len(indices) > 8  # several examples per row
  plain = SFTBatches(data, tok, batch_size=4, max_len=128, seed=0)
  unpacked = plain.rows(indices)  # the same examples, one per row: the plain layout
  assert "segment_ids" not in unpacked

  def plain_loss(p):  # the unpacked path: no segment ids, the batch's token-mean NLL
    plain_logits = model.apply({"params": p}, unpacked["tokens"], unpacked["positions"])[0]
    return completion_nll(plain_logits, unpacked["tokens"], unpacked["loss_mask"])[0], plain_logits

  (_, plain_logits), want_grads = jax.jit(jax.value_and_grad(plain_loss, has_aux=True))(params)
  want_nlls = token_nlls(plain_logits, unpacked["tokens"], unpacked["loss_mask"])  # example after example

  packed_logits = logits(params, packed["tokens"], packed["positions"], packed["segment_ids"])
  np.testing.assert_allclose(token_nlls(packed_logits, packed["tokens"], packed["loss_mask"]), want_nlls,
                             rtol=1e-4, atol=1e-5)
  one_segment = np.zeros_like(packed["segment_ids"])  # what the rows would give without their segment ids
  leaky_logits = logits(params, packed["tokens"], packed["positions"], one_segment)
  assert not np.allclose(token_nlls(leaky_logits, packed["tokens"], packed["loss_mask"]), want_nlls, atol=1e-3)

  objective = make_objective(base_config(), Parts(model), ["nll"])  # the trainer's path: TrainBatch, Forward
  batch = jax.tree.map(jnp.asarray, sft_batch(packed))
  loss, grads = jax.jit(jax.value_and_grad(lambda p: objective(p, batch, {}, None)[0]))(params)
  np.testing.assert_allclose(float(loss), want_nlls.mean(), rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-6), grads, want_grads)


def test_a_query_never_sees_another_segment_of_its_row(nano):
  tok, model, params, logits = nano
  batches = SFTBatches(short_examples(), tok, batch_size=4, max_len=128, seed=0, packing=True)
  packed = batches.batch(0)
  segments = packed["segment_ids"]
  row = int(np.argmax(segments.max(axis=1)))  # the row with the most segments
  assert segments[row].max() >= 2
  row_logits = lambda tokens: np.asarray(logits(params, tokens, packed["positions"], segments))
  before = row_logits(packed["tokens"])
  for changed in (0, 1):  # the first segment, then a middle one: every other segment must not move
    tokens = packed["tokens"].copy()
    where = segments[row] == changed
    tokens[row, where] = (tokens[row, where] + 7) % tok.vocab_size
    after = row_logits(tokens)
    others = (segments[row] >= 0) & ~where
    np.testing.assert_allclose(after[row, others], before[row, others], rtol=0, atol=1e-5)
    assert not np.allclose(after[row, where], before[row, where], atol=1e-3)  # the change itself is seen
    np.testing.assert_array_equal(np.delete(after, row, 0), np.delete(before, row, 0))
  with pytest.raises(ValueError, match="segment_ids"):
    models.shared_prompt_forward(model, params, packed["tokens"], packed["positions"], (2, 8), segments)


def packed_config(*overrides):
  config = load_config(os.path.join(ROOT, "configs", "sft.py") + ":runlocal")
  apply_overrides(config, [("data.packing", "True"), ("data.max_len", "128"), ("train.eval_every", "0"),
                           ("eval.num_examples", "4"), *overrides])
  return config


def losses(workdir):
  return {r["step"]: r["train/loss"] for r in read_metrics(os.path.join(workdir, "metrics.jsonl"))
          if "train/loss" in r}


def test_a_packed_sft_run_trains_and_resumes_to_the_same_losses(tmp_path):
  full = str(tmp_path / "full")
  train.run(packed_config(), full)
  curve = losses(full)
  assert sorted(curve) == [2, 4, 6, 8, 10, 12] and curve[12] < curve[2]
  resumed = str(tmp_path / "resumed")
  assert train.run(packed_config(), resumed, should_stop=lambda step: step == 6)["step"] == 6
  train.run(packed_config(), resumed)
  np.testing.assert_allclose([losses(resumed)[s] for s in curve], [curve[s] for s in curve], rtol=1e-6)


def test_sft_batches_do_not_pack_rows_drawn_per_step_or_two_rows_per_example():
  data, tok = short_examples(4), CharTokenizer()
  for variant in ({"thought_dropout": 0.5}, {"step_by_step": True}):
    with pytest.raises(ValueError, match="packing"):
      SFTBatches(data, tok, batch_size=2, max_len=64, seed=0, packing=True, **variant)


@pytest.mark.parametrize("overrides, match", [
    ([("data.thought_dropout", "0.3")], "config.data.thought_dropout"),
    ([("train.loss_terms", "step_by_step")], "step_by_step"),
    ([("train.loss_terms", "kd"), ("distill.logit_cache", "/nonexistent/cache"), ("distill.top_k", "8"),
      ("distill.teacher", "/nonexistent/teacher")], "config.distill.logit_cache"),
    ([("trainer", "gkd"), ("distill.teacher", "self"), ("distill.max_new_tokens", "40")], "trainer 'gkd'"),
])
def test_packing_with_rows_it_cannot_pack_is_refused_before_any_work(tmp_path, overrides, match):
  workdir = str(tmp_path / "never")
  with pytest.raises(ConfigError, match=match) as info:
    train.run(packed_config(*overrides), workdir)
  assert "config.data.packing" in str(info.value)
  assert not os.path.exists(workdir)
