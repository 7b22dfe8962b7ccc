"""Plain text as examples, for RLP's information-gain reward (rr.rewards.info_gain): a document cut at a token
position is a prefix to read (Example.question) and the next rl.info_gain_tokens tokens to predict (Example.answer),
with no rationale and no verifier (task "").

config.data.format = "text" reads documents from
  data.source = "task"             the generated task's examples written out as plain text (`task_document`): the
                                   question, the program's steps and the answer, one per line; data.train_size and
                                   data.test_size documents, each split its own, as the task's examples are
  data.source = "jsonl"/"parquet"  records {"text": "..."} in data.train_path (and data.test_path); other fields are
                                   ignored

Cut points, in the run's tokens: a document of L tokens is cut ceil((L - k) / k) times (about one cut per k tokens,
k = rl.info_gain_tokens), at distinct positions drawn uniformly from 1..L - k, so every prefix holds at least one
token and every continuation exactly k. The draw is seeded by (data.seed, or config.seed; the split; the document's
index), so a split is the same on every run and resume. A prefix keeps the last data.max_len tokens before its cut,
less what the prompt format adds (format_prompt's "\\n" or chat template), so a prompt fits data.max_len as RL's do.
A document shorter than k + 1 tokens is a DataError naming it.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from rr import tasks
from rr.config import ConfigError
from rr.data.benchmarks import FILE_SOURCES, load_records
from rr.data.errors import DataError
from rr.data.prompts import format_prompt
from rr.tasks import Example

TEXT_FIELD = "text"
SPLIT_IDS = {"train": 0, "test": 1}  # seeds the cut points of each split apart


@dataclasses.dataclass(frozen=True)
class Document:
  text: str
  where: str  # "FILE, line 3" or "generated addition train example 7", for errors


def task_document(example: Example) -> str:
  """A generated example written out as plain text: its question, its program's steps and its answer, one per
  line (parts that are empty are left out)."""
  return "\n".join(part for part in (example.question, example.rationale, example.answer) if part)


def cut_points(num_tokens: int, tokens: int, rng: np.random.Generator) -> np.ndarray:
  """Sorted distinct cut positions in a document of `num_tokens` tokens: ceil((L - k) / k) of them, uniform without
  replacement over 1..L - k (k = `tokens`), so no cut falls inside the last k tokens."""
  room = num_tokens - tokens
  if room < 1:
    raise ValueError(f"a document of {num_tokens} tokens has no cut point for {tokens} next tokens")
  return np.sort(rng.choice(np.arange(1, room + 1), size=-(-room // tokens), replace=False))


def text_examples(documents: Sequence[Document], tokenizer, tokens: int, window: int, seed: int,
                  split: str) -> list[Example]:
  """Every cut of every document, in document order and cut order within one: Example(question = up to `window`
  tokens before the cut, answer = the `tokens` after it, rationale "", task "")."""
  examples = []
  for index, document in enumerate(documents):
    ids = tokenizer.encode(document.text)
    if len(ids) < tokens + 1:
      raise DataError(f"{document.where}: the document is {len(ids)} tokens long; a text example needs at least "
                      f"{tokens + 1} (one to read and config.rl.info_gain_tokens={tokens} to predict): lengthen or "
                      "drop the document, or lower config.rl.info_gain_tokens")
    for cut in cut_points(len(ids), tokens, np.random.default_rng([seed, SPLIT_IDS[split], index])):
      examples.append(Example(question=tokenizer.decode(ids[max(0, cut - window):cut]), rationale="",
                              answer=tokenizer.decode(ids[cut:cut + tokens])))
  return examples


def read_documents(source: str, path: str) -> list[Document]:
  """The "text" field of every record of a JSONL or Parquet file, in order; DataError for a record without one."""
  records = load_records(path, source)
  if not records:
    raise DataError(f"{path!r} is empty; the 'text' format needs one record per document with a \"text\" string")
  documents = []
  for record in records:
    if TEXT_FIELD not in record.data:
      raise DataError(f"{record.where}: missing field 'text'; text records need \"text\" (a document as a string), "
                      f"found fields: {sorted(record.data)}")
    value = record.data[TEXT_FIELD]
    if not isinstance(value, str):
      raise DataError(f"{record.where}: field 'text' must be a string, got {type(value).__name__} {value!r}")
    documents.append(Document(value, record.where))
  return documents


def _task_documents(config, split: str, seed: int) -> list[Document]:
  data = config.data
  task = tasks.get_task(data.task)
  if split == "train":
    size, low, high = data.train_size, data.difficulty, data.difficulty_max
  else:
    size = data.test_size
    low = data.difficulty if data.test_difficulty < 0 else data.test_difficulty
    high = data.difficulty_max if data.test_difficulty_max < 0 else data.test_difficulty_max
  # The same questions as the task's own splits (seed, seed + 1), so a text run reads the documents of the very
  # examples an SFT run on the task trained on
  examples = tasks.make_split(task, split, size, low, seed + SPLIT_IDS[split], high)
  return [Document(task_document(e), f"generated {data.task} {split} example {i}") for i, e in enumerate(examples)]


def load_text_splits(config, tokenizer) -> tuple[list[Example], list[Example]]:
  """(train, test) examples of config.data.format = "text" (the module docstring says how)."""
  data, tokens = config.data, config.rl.info_gain_tokens
  if tokens < 1:
    raise ConfigError(f"config.rl.info_gain_tokens={tokens} must be >= 1: the next tokens each text example predicts")
  if data.prompt_context:
    raise ConfigError(f"config.data.prompt_context={data.prompt_context!r} with data.format='text' would show the "
                      "model the continuation it is asked to predict; set data.prompt_context=''")
  window = data.max_len - len(tokenizer.encode(format_prompt("", tokenizer)))
  if window < 1:
    raise ConfigError(f"config.data.max_len={data.max_len} leaves no room for a text prefix after the prompt format; "
                      "raise it")
  seed = data.seed if data.seed >= 0 else config.seed
  if data.source == "task":
    if data.task not in tasks.TASKS:
      raise ConfigError(f"config.data.task={data.task!r} is not a task; choose one of {sorted(tasks.TASKS)}")
    train_docs, test_docs = _task_documents(config, "train", seed), _task_documents(config, "test", seed)
  elif data.source in FILE_SOURCES:
    train_docs = read_documents(data.source, data.train_path) if data.train_path else []
    test_docs = read_documents(data.source, data.test_path) if data.test_path else []
  else:
    raise ConfigError(f"config.data.format='text' reads data.source 'task', 'jsonl' or 'parquet', not "
                      f"{data.source!r}")
  return (text_examples(train_docs, tokenizer, tokens, window, seed, "train"),
          text_examples(test_docs, tokenizer, tokens, window, seed, "test"))
