"""A multiple-choice file from a generated task, for calibration on choices (docs/methods.md, "Shaping rewards"):
each of a split's questions with its right answer among distractors near it, the gold letter at a seeded place.

  from rr.data.choice_file import write_choice_file
  write_choice_file("addition_choice.jsonl", "addition", "test", size=200, difficulty=3, seed=0)

writes JSONL in the `choice` layout rr.data.benchmarks reads (config.data.source=jsonl, data.format=choice):

  {"question": "478+256", "choices": ["744", "734", "733", "735"], "answer": 1, "rationale": "8+6+0=14\\n...",
   "task": "addition", "difficulty": 3}

"answer" is the 0-based index of the right choice (letter B here); "task" and "difficulty" say where the record came
from and are ignored by the reader (a choice Example is scored by its letter alone, rr.data.answers.verify_choice).
A distractor is the right answer with one character nudged (a digit or letter by 1, 2 or 3, an operator swapped),
then, if those run out, with one character dropped, doubled or swapped with its neighbour; each is one the task's
verifier rejects, with a vote key of its own (so "0734" never stands next to "734"), and without a number written
with a leading zero. Record i draws from a generator seeded by (seed, i), so a smaller size writes a prefix of a
larger one.
"""

from __future__ import annotations

import json
import os
import re
import string

import numpy as np

from rr import files, tasks
from rr.data.answers import LETTERS
from rr.data.errors import DataError
from rr.tasks import Example

OPERATORS = "+-*/"
_LEADING_ZERO = re.compile(r"(?<![0-9])0[0-9]")


def _nudges(text: str) -> list[list[str]]:
  """Candidate distractors of `text` in tiers, nearest first: one character moved by 1, 2, 3 in its class (digits,
  lower-case, upper-case letters) or an operator swapped (tier 0 holds the moves by 1 and the swaps); then one
  character dropped, doubled or swapped with the next."""
  tiers: list[list[str]] = [[], [], [], []]
  for i, ch in enumerate(text):
    for alphabet in (string.digits, string.ascii_lowercase, string.ascii_uppercase):
      if ch in alphabet:
        k = alphabet.index(ch)
        for step in (1, 2, 3):
          for moved in (k - step, k + step):
            if 0 <= moved < len(alphabet):
              tiers[step - 1].append(text[:i] + alphabet[moved] + text[i + 1:])
    if ch in OPERATORS:
      tiers[0].extend(text[:i] + op + text[i + 1:] for op in OPERATORS if op != ch)
    tiers[3].append(text[:i] + text[i + 1:])
    tiers[3].append(text[:i] + ch + text[i:])
    if i + 1 < len(text) and text[i + 1] != ch:
      tiers[3].append(text[:i] + text[i + 1] + ch + text[i + 2:])
  return tiers


def distractors(task, example: Example, count: int, rng: np.random.Generator) -> list[str]:
  """`count` wrong answers near example.answer (module doc), nearest tiers first, seeded order within a tier;
  DataError when the task's answer has fewer."""
  chosen: list[str] = []
  keys = {task.vote_key(example.answer, example)}
  for tier in _nudges(example.answer):
    for candidate in [tier[i] for i in rng.permutation(len(tier))]:
      if len(chosen) == count:
        return chosen
      if not candidate.strip() or candidate != candidate.strip() or _LEADING_ZERO.search(candidate):
        continue
      key = task.vote_key(candidate, example)
      if key in keys or task.verify(candidate, example):
        continue
      keys.add(key)
      chosen.append(candidate)
  if len(chosen) < count:
    raise DataError(f"question {example.question!r} (answer {example.answer!r}) has only {len(chosen)} wrong answers "
                    f"near its answer, fewer than the {count} distractors options={count + 1} needs; ask for fewer "
                    "options or a higher difficulty")
  return chosen


def choice_record(task, example: Example, options: int, rng: np.random.Generator) -> dict:
  """One record of the file: the question, its answer at a seeded position among options - 1 distractors."""
  wrong = distractors(task, example, options - 1, rng)
  gold = int(rng.integers(options))
  choices = wrong[:gold] + [example.answer] + wrong[gold:]
  return {"question": example.question, "choices": choices, "answer": gold, "rationale": example.rationale,
          "task": task.name, "difficulty": example.difficulty}


def write_choice_file(path: str, task: str, split: str, size: int, difficulty: int, seed: int,
                      options: int = 4, difficulty_max: int = 0) -> list[dict]:
  """Writes `size` questions of `task`'s `split` at `difficulty` (rr.tasks.make_split with `seed`; levels
  difficulty..difficulty_max mixed when that is above difficulty) as a choice-format JSONL at `path`, which must not
  exist (rr never overwrites data); returns the records. Every record is built before anything is written, so an
  error leaves no file."""
  if not 2 <= options <= len(LETTERS):
    raise DataError(f"write_choice_file: options={options} must be between 2 and {len(LETTERS)} (one letter each)")
  if size < 1:
    raise DataError(f"write_choice_file: size={size} must be at least 1")
  if files.exists(path):
    raise DataError(f"write_choice_file: {path!r} already exists; rr never overwrites data: choose a new path or "
                    "remove that file yourself")
  family = tasks.get_task(task)
  examples = tasks.make_split(family, split, size, difficulty, seed, difficulty_max)
  records = [choice_record(family, example, options, np.random.default_rng([seed, i]))
             for i, example in enumerate(examples)]
  parent = os.path.dirname(path)
  if parent:
    files.makedirs(parent, "write_choice_file path")
  try:
    files.write_new(path, "".join(json.dumps(record, sort_keys=True) + "\n" for record in records))
  except FileExistsError:
    raise DataError(f"write_choice_file: {path!r} appeared while the records were built; rr never overwrites "
                    "data: choose a new path") from None
  return records
