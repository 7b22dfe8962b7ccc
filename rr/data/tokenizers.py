"""Tokenizers behind one small protocol: a built-in character tokenizer and a local Hugging Face one.

Protocol: encode(text) -> list[int]; decode(ids) -> str (does not stop at eos; drops pad ids);
vocab_size; pad_id; eos_id; think_open = "<think>"; think_close = "</think>"; chat_template (bool: prompts go
through `chat_prompt(question)`, see rr.data.prompts.format_prompt).
"""

from __future__ import annotations

import os
from typing import Protocol, Sequence, runtime_checkable

from rr.data.errors import DataError

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
KINDS = ("char", "hf")


@runtime_checkable
class Tokenizer(Protocol):
  vocab_size: int
  pad_id: int
  eos_id: int
  think_open: str
  think_close: str
  chat_template: bool

  def encode(self, text: str) -> list[int]:
    ...

  def decode(self, ids: Sequence[int]) -> str:
    ...


class CharTokenizer:
  """One id per character of printable ASCII and "\\n", after the specials <pad>=0, <eos>, <think>, </think>,
  <unk>. Special-token strings inside text encode to their single ids; any other character is <unk>.
  vocab_size is padded up to a multiple of 8 (the padding ids decode as <unk>)."""

  SPECIALS = ("<pad>", "<eos>", THINK_OPEN, THINK_CLOSE, "<unk>")
  CHARS = "\n" + "".join(chr(c) for c in range(32, 127))
  think_open = THINK_OPEN
  think_close = THINK_CLOSE
  chat_template = False

  def __init__(self):
    self.pieces = list(self.SPECIALS) + list(self.CHARS)
    self._id_of = {piece: i for i, piece in enumerate(self.pieces)}
    self.pad_id = self._id_of["<pad>"]
    self.eos_id = self._id_of["<eos>"]
    self.unk_id = self._id_of["<unk>"]
    self.vocab_size = -(-len(self.pieces) // 8) * 8
    # Longest specials first, so a special that is a prefix of another never wins.
    self._specials_by_length = sorted(self.SPECIALS, key=len, reverse=True)

  def encode(self, text: str) -> list[int]:
    ids, pos = [], 0
    while pos < len(text):
      if text[pos] == "<":
        special = next((s for s in self._specials_by_length if text.startswith(s, pos)), None)
        if special is not None:
          ids.append(self._id_of[special])
          pos += len(special)
          continue
      ids.append(self._id_of.get(text[pos], self.unk_id))
      pos += 1
    return ids

  def decode(self, ids: Sequence[int]) -> str:
    pieces = []
    for i in ids:
      i = int(i)
      if not 0 <= i < self.vocab_size:
        raise ValueError(f"token id {i} is outside the char vocabulary [0, {self.vocab_size})")
      if i == self.pad_id:
        continue
      pieces.append(self.pieces[i] if i < len(self.pieces) else "<unk>")
    return "".join(pieces)


class HFTokenizer:
  """A Hugging Face tokenizer read from a local directory (never downloaded).

  encode adds no special tokens (no BOS); eos and pad ids come from the tokenizer, pad falling back to eos.
  For a chat model eos is the end-of-turn token its tokenizer names (e.g. Qwen's "<|im_end|>"), so a completion
  ends its turn. <think>/</think> are single ids only when the tokenizer has them (e.g. Qwen3); otherwise they
  take a few. vocab_size is len(tokenizer), which counts added tokens; a model's embedding table may be larger.
  With `chat_template`, prompts are the tokenizer's own chat template applied to one user turn (after an optional
  system turn), ending with the template's generation prompt, as TRL and vLLM build chat prompts.
  """

  think_open = THINK_OPEN
  think_close = THINK_CLOSE

  def __init__(self, hf_tokenizer, path: str = "", chat_template: bool = False, system_prompt: str = ""):
    self.hf = hf_tokenizer
    self.path = path
    if hf_tokenizer.eos_token_id is None:
      raise DataError(f"tokenizer at {path!r} has no eos token; set eos_token in its tokenizer_config.json")
    self.eos_id = int(hf_tokenizer.eos_token_id)
    pad = hf_tokenizer.pad_token_id
    self.pad_id = self.eos_id if pad is None else int(pad)
    self.vocab_size = len(hf_tokenizer)
    if chat_template and not getattr(hf_tokenizer, "chat_template", None):
      raise DataError(f"tokenizer at {path!r} has no chat template (no chat_template.jinja or chat_template in "
                      "tokenizer_config.json); set config.tokenizer.chat_template=False or use a chat model's "
                      "tokenizer")
    self.chat_template = chat_template
    self.system_prompt = system_prompt

  def chat_prompt(self, question: str) -> str:
    """The chat template's text for one user turn, up to where the assistant starts writing."""
    messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
    messages.append({"role": "user", "content": question})
    return self.hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

  @classmethod
  def from_dir(cls, path: str, chat_template: bool = False, system_prompt: str = "") -> HFTokenizer:
    if not path or not os.path.isdir(path):
      raise DataError(f"tokenizer directory {path!r} does not exist; set config.tokenizer.path to a local "
                      f"directory holding tokenizer.json / tokenizer_config.json (rr never downloads)")
    import transformers  # imported late: slow, and only needed for this tokenizer

    try:
      hf = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
    except Exception as e:  # the library raises many kinds; all mean the directory is not a usable tokenizer
      raise DataError(f"could not load a Hugging Face tokenizer from {path!r}: {type(e).__name__}: {e}") from e
    return cls(hf, path, chat_template, system_prompt)

  def encode(self, text: str) -> list[int]:
    return list(self.hf.encode(text, add_special_tokens=False))

  def decode(self, ids: Sequence[int]) -> str:
    kept = [int(i) for i in ids if int(i) != self.pad_id]  # when pad falls back to eos, eos goes too
    return self.hf.decode(kept, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def load_tokenizer(kind: str, path: str = "", chat_template: bool = False,
                   system_prompt: str = "") -> CharTokenizer | HFTokenizer:
  """kind "char" -> CharTokenizer(); "hf" -> HFTokenizer.from_dir(path, chat_template, system_prompt)."""
  if kind == "char":
    return CharTokenizer()
  if kind == "hf":
    return HFTokenizer.from_dir(path, chat_template, system_prompt)
  raise DataError(f"tokenizer kind {kind!r} (config.tokenizer.kind) is unknown; choose one of {KINDS}")


def tokenizer_from_config(config) -> CharTokenizer | HFTokenizer:
  """The run's tokenizer: config.tokenizer, whose path defaults to the model directory (config.model.hf_path),
  where Hugging Face checkpoints keep their tokenizer files."""
  tok = config.tokenizer
  return load_tokenizer(tok.kind, tok.path or config.model.hf_path, tok.chat_template, tok.system_prompt)
