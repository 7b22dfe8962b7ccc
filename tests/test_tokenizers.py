"""Tokenizers: exact round trips, special tokens as single ids, clear errors; a Hugging Face one built locally."""

import pytest

from rr.data import CharTokenizer, DataError, HFTokenizer, load_tokenizer

SPECIALS = ("<pad>", "<eos>", "<think>", "</think>")
SAMPLE = "478+256\n8+6+0=14 rev(up(abc))=CBA ~!@#$%^&*()_{}|:\"<>?`-=[]\\;',./ Zz"


def test_char_round_trip_every_printable_character():
  tok = CharTokenizer()
  text = "".join(chr(c) for c in range(32, 127)) + "\n" + SAMPLE
  ids = tok.encode(text)
  assert len(ids) == len(text)  # one id per character
  assert tok.decode(ids) == text
  assert all(0 <= i < tok.vocab_size for i in ids)


def test_char_specials_are_single_distinct_ids():
  tok = CharTokenizer()
  ids = [tok.encode(s) for s in SPECIALS]
  assert all(len(i) == 1 for i in ids)
  assert len({i[0] for i in ids}) == len(SPECIALS)
  assert tok.pad_id == 0 == ids[0][0] and tok.eos_id == ids[1][0]
  assert tok.encode(tok.think_open) == ids[2] and tok.encode(tok.think_close) == ids[3]
  text = "<think>1+2</think>3<eos>"
  encoded = tok.encode(text)
  assert len(encoded) == 3 + 1 + 1 + 1 + 1  # specials one id each, characters one each
  assert tok.decode(encoded) == text
  assert len(tok.encode("<thin")) == 5  # a partial special is plain characters


def test_char_vocab_padding_unknown_and_pad_stripping():
  tok = CharTokenizer()
  assert tok.vocab_size % 8 == 0 and tok.vocab_size >= 95 + 1 + 5
  unk = tok.encode("é")
  assert len(unk) == 1 and unk != tok.encode("e")
  assert tok.encode("\t") == unk
  ab = tok.encode("ab")
  assert tok.decode([tok.pad_id] + ab + [tok.eos_id] + ab + [tok.pad_id] * 3) == "ab<eos>ab"  # no stop at eos
  with pytest.raises(ValueError):
    tok.decode([tok.vocab_size])


def build_hf_tokenizer(directory, with_pad=True):
  """A tiny byte-level BPE trained on a few strings, saved like a Hugging Face checkpoint's tokenizer."""
  import transformers
  from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

  tok = Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=list(SPECIALS), show_progress=False,
                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
  tok.train_from_iterator(["478+256\n8+6+0=14", "hello world", "rev(up(abc))=CBA"] * 3, trainer=trainer)
  kwargs = {"pad_token": "<pad>"} if with_pad else {}
  fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>",
                                              additional_special_tokens=["<think>", "</think>"], **kwargs)
  fast.save_pretrained(str(directory))
  return tok


def test_hf_round_trip_and_specials(tmp_path):
  raw = build_hf_tokenizer(tmp_path / "tok")
  tok = load_tokenizer("hf", str(tmp_path / "tok"))
  assert isinstance(tok, HFTokenizer)
  assert tok.eos_id == raw.token_to_id("<eos>") and tok.pad_id == raw.token_to_id("<pad>")
  assert tok.vocab_size == raw.get_vocab_size()
  for text in (SAMPLE, "héllo wörld ✓", "", " leading and trailing  "):
    assert tok.decode(tok.encode(text)) == text
  for special in SPECIALS:
    assert tok.encode(special) == [raw.token_to_id(special)]
  ids = tok.encode("<think>8+6</think>14")
  assert ids[0] == raw.token_to_id("<think>") and raw.token_to_id("</think>") in ids
  assert tok.decode([tok.pad_id] + ids + [tok.eos_id, tok.pad_id]) == "<think>8+6</think>14<eos>"


def test_hf_pad_falls_back_to_eos(tmp_path):
  raw = build_hf_tokenizer(tmp_path / "tok", with_pad=False)
  tok = HFTokenizer.from_dir(str(tmp_path / "tok"))
  assert tok.pad_id == tok.eos_id == raw.token_to_id("<eos>")


def test_hf_missing_or_broken_directory_names_the_path(tmp_path):
  missing = str(tmp_path / "nope")
  with pytest.raises(DataError, match="nope"):
    load_tokenizer("hf", missing)
  (tmp_path / "empty").mkdir()
  with pytest.raises(DataError, match="empty"):
    HFTokenizer.from_dir(str(tmp_path / "empty"))
  with pytest.raises(DataError, match="config.tokenizer.path"):
    load_tokenizer("hf", "")


def test_load_tokenizer_kinds():
  assert isinstance(load_tokenizer("char"), CharTokenizer)
  with pytest.raises(DataError, match="char"):
    load_tokenizer("sentencepiece")
