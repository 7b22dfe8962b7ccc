"""How an example becomes text: the prompt the model reads and the completion it learns to write.

  prompt      question + "\\n", or with a Hugging Face tokenizer and config.tokenizer.chat_template the
              tokenizer's chat template around the question as one user turn (ending with the generation prompt)
  completion  "<think>" + rationale + "</think>" + answer   (eos is appended as a token id, never as text)
"""

from __future__ import annotations

from typing import Sequence

from rr.data.tokenizers import THINK_CLOSE, THINK_OPEN
from rr.tasks import Example


def format_prompt(question: str, tokenizer=None) -> str:
  """The prompt text the model reads; `tokenizer` decides whether its chat template wraps the question."""
  if getattr(tokenizer, "chat_template", False):
    return tokenizer.chat_prompt(question)
  return question + "\n"


def format_completion(example: Example) -> str:
  return THINK_OPEN + example.rationale + THINK_CLOSE + example.answer


def parse_completion(text: str) -> tuple[str, str]:
  """(rationale, answer). The answer is the text after the last "</think>", stripped; the rationale is the text
  before it, without a leading "<think>", stripped. Without a "</think>": ("", whole text stripped)."""
  head, close, answer = text.rpartition(THINK_CLOSE)
  if not close:
    return "", text.strip()
  head = head.strip()
  if head.startswith(THINK_OPEN):
    head = head[len(THINK_OPEN):]
  return head.strip(), answer.strip()


def answer_part(text) -> str | None:
  """parse_completion's answer, or None when the completion never closed its thinking: a "<think>" with no
  "</think>" after it (the model ran out of tokens while thinking). Such text is no answer even when it holds
  a "####" or a \\boxed{}, so rewards and evaluation alike score it wrong. Two "</think>" are read as one
  thought: the answer is what follows the last of them. None for a non-string."""
  if not isinstance(text, str) or THINK_OPEN in text.rpartition(THINK_CLOSE)[2]:
    return None
  return parse_completion(text)[1]


def encode_prompts(tokenizer, questions: Sequence[str]) -> list[list[int]]:
  """Prompt token ids for the sampler, one list per question."""
  return [tokenizer.encode(format_prompt(q, tokenizer)) for q in questions]


def decode_completion(tokenizer, ids: Sequence[int]) -> str:
  """Text of generated ids up to (not including) the first eos; pads are dropped."""
  ids = [int(i) for i in ids]
  if tokenizer.eos_id in ids:
    ids = ids[:ids.index(tokenizer.eos_id)]
  return tokenizer.decode(ids)
