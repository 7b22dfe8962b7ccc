"""User data: one JSON object per line with "question", "answer" and optionally "rationale" (all strings).

Blank lines are skipped; other keys are ignored. Every problem is a DataError naming the path and line.
"""

from __future__ import annotations

import json
import os

from rr.data.errors import DataError
from rr.tasks import Example

REQUIRED_KEYS = ("question", "answer")
OPTIONAL_KEYS = ("rationale",)


def load_jsonl(path: str) -> list[Example]:
  """Examples with task "" and difficulty 0, in file order."""
  if not os.path.isfile(path):
    raise DataError(f"JSONL file {path!r} does not exist; check config.data.train_path / config.data.test_path")
  try:
    with open(path, encoding="utf-8") as f:
      lines = f.read().split("\n")
  except (OSError, UnicodeDecodeError) as e:
    raise DataError(f"could not read JSONL file {path!r} as UTF-8 text: {e}") from e
  examples = []
  for number, line in enumerate(lines, start=1):
    if not line.strip():
      continue
    examples.append(_example_from_line(line, path, number))
  if not examples:
    raise DataError(f"JSONL file {path!r} is empty; it needs one JSON object per line with "
                    f"\"question\" and \"answer\" (and optionally \"rationale\")")
  return examples


def _example_from_line(line: str, path: str, number: int) -> Example:
  where = f"{path}, line {number}"
  try:
    record = json.loads(line)
  except json.JSONDecodeError as e:
    raise DataError(f"{where}: malformed JSON ({e.msg} at column {e.colno}); each line must be one JSON object, "
                    f"e.g. {{\"question\": \"2+2\", \"answer\": \"4\"}}") from e
  if not isinstance(record, dict):
    raise DataError(f"{where}: expected a JSON object with \"question\" and \"answer\", got {type(record).__name__}")
  for key in REQUIRED_KEYS:
    if key not in record:
      raise DataError(f"{where}: missing key {key!r}; each line needs \"question\" and \"answer\" "
                      f"(found keys: {sorted(record)})")
  for key in REQUIRED_KEYS + OPTIONAL_KEYS:
    if key in record and not isinstance(record[key], str):
      raise DataError(f"{where}: {key!r} must be a string, got {type(record[key]).__name__} {record[key]!r}; "
                      f"quote it")
  return Example(question=record["question"], rationale=record.get("rationale", ""), answer=record["answer"])
