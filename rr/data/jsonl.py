"""User data: one JSON object per line with "question", "answer" and optionally "rationale" (all strings).

Blank lines are skipped; other keys are ignored. Every problem is a DataError naming the path and line.
`read_jsonl` is the line reader the benchmark formats (rr.data.benchmarks) share; `rationale_example` is the
"rationale" format's record check, used for Parquet rows too.
"""

from __future__ import annotations

import json
import os

from rr.data.errors import DataError
from rr.tasks import Example

REQUIRED_KEYS = ("question", "answer")
OPTIONAL_KEYS = ("rationale",)
RATIONALE_FIELDS = "\"question\" and \"answer\" (and optionally \"rationale\")"


def read_jsonl(path: str, expect: str = "with \"question\" and \"answer\"") -> list[tuple[int, dict]]:
  """(line number, JSON object) for every non-blank line, in file order; [] for an empty file. `expect`
  says what an object should hold, for the error on a line that is not an object."""
  if not os.path.isfile(path):
    raise DataError(f"JSONL file {path!r} does not exist; check config.data.train_path / config.data.test_path")
  try:
    with open(path, encoding="utf-8") as f:
      lines = f.read().split("\n")
  except (OSError, UnicodeDecodeError) as e:
    raise DataError(f"could not read JSONL file {path!r} as UTF-8 text: {e}") from e
  records = []
  for number, line in enumerate(lines, start=1):
    if not line.strip():
      continue
    where = f"{path}, line {number}"
    try:
      record = json.loads(line)
    except json.JSONDecodeError as e:
      raise DataError(f"{where}: malformed JSON ({e.msg} at column {e.colno}); each line must be one JSON object, "
                      f"e.g. {{\"question\": \"2+2\", \"answer\": \"4\"}}") from e
    if not isinstance(record, dict):
      raise DataError(f"{where}: expected a JSON object {expect}, got {type(record).__name__}")
    records.append((number, record))
  return records


def load_jsonl(path: str) -> list[Example]:
  """Examples with task "" and difficulty 0, in file order."""
  examples = [rationale_example(record, f"{path}, line {number}") for number, record in read_jsonl(path)]
  if not examples:
    raise DataError(f"JSONL file {path!r} is empty; it needs one JSON object per line with {RATIONALE_FIELDS}")
  return examples


def rationale_example(record: dict, where: str, each: str = "line") -> Example:
  """The "rationale" format: question, answer and an optional rationale, all strings; task "" (exact match).
  `each` names the unit of the file ("line", "row") in the error on a missing key."""
  for key in REQUIRED_KEYS:
    if key not in record:
      raise DataError(f"{where}: missing key {key!r}; each {each} needs \"question\" and \"answer\" "
                      f"(found keys: {sorted(record)})")
  for key in REQUIRED_KEYS + OPTIONAL_KEYS:
    if key in record and not isinstance(record[key], str):
      raise DataError(f"{where}: {key!r} must be a string, got {type(record[key]).__name__} {record[key]!r}; "
                      f"quote it")
  return Example(question=record["question"], rationale=record.get("rationale", ""), answer=record["answer"])
