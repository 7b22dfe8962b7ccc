"""SFT batches and the prompt/completion format: determinism, padding, mask alignment, epochs, length checks."""

import numpy as np
import pytest

from rr.data import (CharTokenizer, DataError, SFTBatches, decode_completion, encode_prompts, format_completion,
                     format_prompt, parse_completion)
from rr.tasks import Example, make_split


def examples(n=10):
  return make_split("addition", "train", n, difficulty=3, seed=0) + [
      Example("ab", "", "ba"), Example("x" * 20, "step\nstep", "")]  # rows of different lengths


def expected_completion(example):
  return "<think>" + example.rationale + "</think>" + example.answer


def test_prompt_and_completion_format():
  example = Example("478+256", "8+6+0=14\n7+5+1=13\n4+2+1=07", "734")
  assert format_prompt("478+256") == "478+256\n"
  assert format_completion(example) == expected_completion(example)
  assert parse_completion(format_completion(example)) == (example.rationale, "734")
  assert parse_completion("<think>a</think>b</think> 42 \n") == ("a</think>b", "42")  # after the last close
  assert parse_completion(" 42 \n") == ("", "42")
  assert parse_completion("<think>never closed 42") == ("", "<think>never closed 42")
  tok = CharTokenizer()
  assert encode_prompts(tok, ["1+2", "ab"]) == [tok.encode("1+2\n"), tok.encode("ab\n")]
  ids = tok.encode("<think>x</think>7") + [tok.eos_id] + tok.encode("junk") + [tok.pad_id]
  assert decode_completion(tok, ids) == "<think>x</think>7"


def test_batch_is_a_pure_function_of_seed_and_step():
  data, tok = examples(), CharTokenizer()
  first = SFTBatches(data, tok, batch_size=4, max_len=48, seed=7)
  second = SFTBatches(data, tok, batch_size=4, max_len=48, seed=7)
  late = first.batch(9)  # asking out of order changes nothing
  for step in (0, 3, 9):
    a, b = first.batch(step), second.batch(step)
    assert set(a) == {"tokens", "positions", "loss_mask"}
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])
  np.testing.assert_array_equal(late["tokens"], second.batch(9)["tokens"])
  other_seed = SFTBatches(data, tok, batch_size=4, max_len=48, seed=8)
  assert any(not np.array_equal(first.batch(s)["tokens"], other_seed.batch(s)["tokens"]) for s in range(3))


def test_layout_padding_positions_and_mask_alignment():
  data, tok = examples(), CharTokenizer()
  batches = SFTBatches(data, tok, batch_size=5, max_len=48, seed=0)
  by_question = {e.question: e for e in data}
  for step in range(4):
    batch = batches.batch(step)
    tokens, positions, mask = batch["tokens"], batch["positions"], batch["loss_mask"]
    assert tokens.dtype == np.int32 and positions.dtype == np.int32 and mask.dtype == np.float32
    assert tokens.shape == positions.shape == mask.shape == (5, 48)
    for row in range(5):
      real = positions[row] >= 0
      n = int(real.sum())
      assert real[:n].all() and not real[n:].any()  # right padding
      np.testing.assert_array_equal(positions[row, :n], np.arange(n))
      assert (tokens[row, n:] == tok.pad_id).all() and mask[row, -1] == 0
      question = tok.decode(tokens[row, :n]).split("\n", 1)[0]
      example = by_question[question]
      targets = tokens[row, 1:][mask[row, :-1] == 1]  # loss_mask[t] weights the prediction of tokens[t+1]
      assert tok.decode(targets) == expected_completion(example) + "<eos>"
      first_target = int(np.argmax(mask[row]))
      assert tok.decode(tokens[row, :first_target + 1]) == example.question + "\n"  # prompt is not trained
      assert set(np.unique(mask[row])) <= {0.0, 1.0}


def test_each_epoch_visits_every_example_once():
  data, tok = examples(), CharTokenizer()
  n, batch_size = len(data), 5
  batches = SFTBatches(data, tok, batch_size=batch_size, max_len=48, seed=3)
  stream = []
  for step in range(3 * n // batch_size + 1):
    tokens = batches.batch(step)["tokens"]
    stream += [tok.decode(row).split("\n", 1)[0] for row in tokens]
  questions = sorted(e.question for e in data)
  epochs = [stream[i * n:(i + 1) * n] for i in range(3)]
  for epoch in epochs:
    assert sorted(epoch) == questions
  assert epochs[0] != epochs[1]  # a fresh permutation each epoch


def test_lengths_are_validated_at_construction():
  data, tok = examples(), CharTokenizer()
  # prompt = question + "\n"; completion = <think> rationale </think> answer <eos>, specials one char id each.
  longest = max(len(e.question) + 1 + 1 + len(e.rationale) + 1 + len(e.answer) + 1 for e in data)
  batches = SFTBatches(data, tok, batch_size=2, max_len=longest, seed=0)
  assert batches.max_example_len == longest
  assert batches.batch(0)["positions"].max() <= longest - 1
  with pytest.raises(DataError, match=f"{longest} tokens.*config.data.max_len") as info:
    SFTBatches(data, tok, batch_size=2, max_len=longest - 1, seed=0)
  assert f"at least {longest}" in str(info.value)
  with pytest.raises(DataError, match="no examples"):
    SFTBatches([], tok, batch_size=2, max_len=64, seed=0)


def test_loss_mask_targets_are_exactly_the_completion_ids_then_eos():
  # Raw ids, not decoded text: decoding drops pad ids, so an extra (pad) target would be invisible there.
  data, tok = examples(), CharTokenizer()
  batches = SFTBatches(data, tok, batch_size=5, max_len=48, seed=0)
  for step in range(4):
    batch = batches.batch(step)
    for row, i in enumerate(batches.example_indices(step)):
      tokens, mask = batch["tokens"][row], batch["loss_mask"][row]
      targets = tokens[1:][mask[:-1] == 1]  # loss_mask[t] weights the prediction of tokens[t+1]
      want = tok.encode(format_completion(data[i])) + [tok.eos_id]
      np.testing.assert_array_equal(targets, want)
      assert tok.pad_id not in targets.tolist() and mask.sum() == len(want) and mask[-1] == 0


def _targets(batch, row):
  return batch["tokens"][row, 1:][batch["loss_mask"][row, :-1] == 1].tolist()


def test_thought_dropout_replaces_a_share_p_of_rationales_by_an_empty_think_block_the_same_on_every_run():
  data, tok = examples(), CharTokenizer()
  p, batch_size, steps = 0.3, 8, 60
  dropping = SFTBatches(data, tok, batch_size=batch_size, max_len=48, seed=5, thought_dropout=p)
  again = SFTBatches(data, tok, batch_size=batch_size, max_len=48, seed=5, thought_dropout=p)
  plain = SFTBatches(data, tok, batch_size=batch_size, max_len=48, seed=5)  # the same examples in each step
  asked_backwards = {step: again.batch(step) for step in reversed(range(steps))}  # as a resumed run would ask
  dropped_rows = 0
  for step in range(steps):
    batch = dropping.batch(step)
    for key in batch:
      np.testing.assert_array_equal(batch[key], asked_backwards[step][key])
    np.testing.assert_array_equal(dropping.example_indices(step), plain.example_indices(step))
    dropped = dropping.thought_dropped(step)
    assert dropped.shape == (batch_size,)
    for row, i in enumerate(dropping.example_indices(step)):
      empty_think = tok.encode("<think></think>" + data[i].answer) + [tok.eos_id]
      full = tok.encode(format_completion(data[i])) + [tok.eos_id]
      assert _targets(batch, row) == (empty_think if dropped[row] else full)
      assert tok.decode(batch["tokens"][row]).startswith(data[i].question + "\n<think>")  # the same prompt
    dropped_rows += int(dropped.sum())
  share = dropped_rows / (steps * batch_size)  # 480 draws: 3 standard deviations are 0.063
  assert abs(share - p) < 0.07
  other_seed = SFTBatches(data, tok, batch_size=batch_size, max_len=48, seed=6, thought_dropout=p)
  assert any(not np.array_equal(dropping.thought_dropped(s), other_seed.thought_dropped(s)) for s in range(5))


def test_thought_dropout_zero_is_exactly_the_plain_batches_and_one_drops_every_rationale():
  data, tok = examples(), CharTokenizer()
  plain = SFTBatches(data, tok, batch_size=4, max_len=48, seed=2)
  zero = SFTBatches(data, tok, batch_size=4, max_len=48, seed=2, thought_dropout=0.0)
  every = SFTBatches(data, tok, batch_size=4, max_len=48, seed=2, thought_dropout=1.0)
  for step in range(6):
    a, b = plain.batch(step), zero.batch(step)
    assert set(a) == set(b) == {"tokens", "positions", "loss_mask"}
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])
    for row, i in enumerate(every.example_indices(step)):
      assert _targets(every.batch(step), row) == tok.encode("<think></think>" + data[i].answer) + [tok.eos_id]
  with pytest.raises(DataError, match="thought_dropout"):
    SFTBatches(data, tok, batch_size=4, max_len=48, seed=2, thought_dropout=1.5)


def test_step_by_step_lays_out_a_predict_row_and_an_explain_row_per_example():
  data, tok = examples(), CharTokenizer()
  batches = SFTBatches(data, tok, batch_size=6, max_len=64, seed=1, step_by_step=True)
  assert batches.units_per_batch == 3 and batches.steps_per_epoch == len(data) / 3
  seen = []
  for step in range(2 * len(data) // 3):
    batch = batches.batch(step)
    assert batch["rationale_mask"].shape == (6, 64) and batch["rationale_mask"].dtype == np.float32
    indices = batches.example_indices(step)
    seen += indices.tolist()
    for j, i in enumerate(indices):
      predict, explain = 2 * j, 2 * j + 1
      first = lambda row: int(np.argmax(batch["loss_mask"][row]))
      assert tok.decode(batch["tokens"][predict, :first(predict) + 1]) == "predict: " + data[i].question + "\n"
      assert tok.decode(batch["tokens"][explain, :first(explain) + 1]) == "explain: " + data[i].question + "\n"
      assert _targets(batch, predict) == tok.encode(data[i].answer) + [tok.eos_id]
      assert _targets(batch, explain) == tok.encode("<think>" + data[i].rationale + "</think>") + [tok.eos_id]
      np.testing.assert_array_equal(batch["rationale_mask"][predict], 0.0)
      np.testing.assert_array_equal(batch["rationale_mask"][explain], batch["loss_mask"][explain])
  assert sorted(seen[:len(data)]) == list(range(len(data)))  # an epoch is every example once, as two rows each
  # The explain rows are the longer ones: "explain: " counts against max_len.
  longest = max(len("explain: ") + len(e.question) + 1 + 1 + len(e.rationale) + 1 + 1 for e in data)
  with pytest.raises(DataError, match=f"{longest} tokens"):
    SFTBatches(data, tok, batch_size=6, max_len=longest - 1, seed=1, step_by_step=True)


def test_a_batch_is_padded_to_the_bucket_of_its_longest_row_and_trains_the_same_as_at_max_len():
  """Short examples under a long max_len (a user's JSONL config): the batch is 64 columns, not 256, and the
  model's completion NLL on it is the NLL of the same rows padded to max_len (padding is never attended to)."""
  import jax

  from rr import models
  from rr.data.sft_batches import bucket_width
  from rr.losses import completion_nll

  assert [bucket_width(n, 256) for n in (1, 32, 33, 64, 65, 200, 256)] == [32, 32, 64, 64, 128, 256, 256]
  assert bucket_width(41, 48) == 48  # capped: the default job's batches keep their 48 columns
  tok = CharTokenizer()
  batches = SFTBatches(examples(), tok, batch_size=4, max_len=256, seed=0)
  bucketed = batches.batch(0)
  full = batches.rows(batches.example_indices(0))
  longest = int((bucketed["positions"] >= 0).sum(axis=1).max())
  assert bucketed["tokens"].shape == (4, bucket_width(longest, 256)) == (4, 64) and full["tokens"].shape == (4, 256)
  for key in ("tokens", "positions", "loss_mask"):
    np.testing.assert_array_equal(bucketed[key], full[key][:, :64])
    assert np.all(full[key][:, 64:] == {"tokens": tok.pad_id, "positions": -1, "loss_mask": 0}[key])
  cfg = models.model_config("nano", vocab_size=tok.vocab_size)
  params = models.init_params(cfg, jax.random.key(0))
  nll = [completion_nll(models.Decoder(cfg).apply({"params": params}, b["tokens"], b["positions"])[0], b["tokens"],
                        b["loss_mask"])[0] for b in (bucketed, full)]
  np.testing.assert_allclose(nll[0], nll[1], rtol=1e-5)
