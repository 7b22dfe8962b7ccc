"""Benchmark records (GSM8K, MATH, multiple choice) and rr's own layout, from JSONL or Parquet, as rr Examples.

  config.data.format  a record holds                                              Example.task
  rationale           question, answer, rationale?  (rr.data.jsonl)               ""  (exact match)
  gsm8k               question, answer = "<rationale> #### <final answer>"        "gsm8k"
  math                problem, solution (\\boxed{} answer) and/or answer, level?   "math"
  choice              question, choices, answer (index or label) / answerKey,     "choice"
                      rationale? / explanation?

Example.task names the verifier (rr.data.answers.VERIFIERS); these names never collide with rr.tasks.TASKS.
Other fields are ignored. In Parquet a null is an absent field (columnar files have no "missing").
Every malformed record is a DataError naming the file, the line (JSONL, 1-based) or row (Parquet, 0-based),
the field, and the fix.
"""

from __future__ import annotations

import dataclasses
import os
import re

from rr.data.answers import LETTERS, gsm8k_final, last_boxed
from rr.data.errors import DataError
from rr.data.jsonl import RATIONALE_FIELDS, load_jsonl, rationale_example, read_jsonl
from rr.tasks import Example

FORMATS = ("rationale", "gsm8k", "math", "choice")
FILE_SOURCES = ("jsonl", "parquet")
TASK_OF_FORMAT = {"rationale": "", "gsm8k": "gsm8k", "math": "math", "choice": "choice"}
FIELDS = {
    "rationale": RATIONALE_FIELDS,
    "gsm8k": "\"question\" and \"answer\" (\"<rationale> #### <final answer>\")",
    "math": "\"problem\" and \"solution\" (with a \\boxed{} final answer) or \"answer\" (optionally \"level\")",
    "choice": "\"question\", \"choices\" (a list of strings, or {\"text\": [...], \"label\": [...]}) and \"answer\" "
              "(a 0-based index or a label; or \"answerKey\")",
}
_CALCULATOR = re.compile(r"<<[^<>]*>>")


@dataclasses.dataclass(frozen=True)
class Record:
  """One record of a file and where it came from, for error messages."""
  data: dict
  where: str  # "FILE, line 4" (JSONL) or "FILE, row 3" (Parquet, 0-based)
  unit: str  # "line" or "row"


# ------------------------------------------------------------------------------------------ readers


def file_kind(path: str) -> str:
  """"jsonl" or "parquet", from the file's extension."""
  ext = os.path.splitext(path)[1].lower()
  if ext in (".jsonl", ".parquet"):
    return ext[1:]
  raise DataError(f"cannot tell the file type of {path!r} from its extension; name it .jsonl (one JSON object "
                  "per line) or .parquet, or set config.data.source")


def load_records(path: str, kind: str | None = None) -> list[Record]:
  """Every record of a .jsonl or .parquet file in order (`kind` "jsonl"/"parquet", else from the extension)."""
  kind = kind or file_kind(path)
  if kind == "jsonl":
    return [Record(data, f"{path}, line {number}", "line")
            for number, data in read_jsonl(path, expect="(one record per line)")]
  if kind != "parquet":
    raise DataError(f"file type {kind!r} for {path!r} is not one of {FILE_SOURCES}")
  if not os.path.isfile(path):
    raise DataError(f"Parquet file {path!r} does not exist; check config.data.train_path / config.data.test_path")
  import pyarrow.parquet as pq  # imported late: only Parquet users pay for it

  try:
    rows = pq.read_table(path).to_pylist()
  except Exception as e:  # pyarrow raises several kinds; all mean this is not a readable Parquet file
    raise DataError(f"could not read Parquet file {path!r} ({type(e).__name__}: {e}); is it a Parquet file?") from e
  return [Record({k: v for k, v in row.items() if v is not None}, f"{path}, row {i}", "row")
          for i, row in enumerate(rows)]


def load_examples(source: str, format: str, path: str) -> list[Example]:
  """The Examples of one file: `source` "jsonl" or "parquet", `format` one of FORMATS. An empty file is an
  error; JSONL in the "rationale" format reads exactly as rr.data.jsonl.load_jsonl."""
  if format not in FORMATS:
    raise DataError(f"data format {format!r} (config.data.format) is not one of {FORMATS}")
  if source == "jsonl" and format == "rationale":
    return load_jsonl(path)
  records = load_records(path, source)
  if not records:
    what = "one JSON object per line" if source == "jsonl" else "one row per example"
    raise DataError(f"{source.upper() if source == 'jsonl' else 'Parquet'} file {path!r} is empty; the "
                    f"{format!r} format needs {what} with {FIELDS[format]}")
  return [to_example(format, record) for record in records]


def to_example(format: str, record: Record) -> Example:
  """One record as an Example of `format` (DataError on anything malformed)."""
  return _CONVERTERS[format](record)


# ------------------------------------------------------------------------------------------ fields


def _missing(record: Record, key: str, format: str) -> DataError:
  return DataError(f"{record.where}: missing field {key!r}; {format} records need {FIELDS[format]} "
                   f"(found fields: {sorted(record.data)})")


def _text(record: Record, key: str, format: str, optional: bool = False) -> str | None:
  if key not in record.data:
    if optional:
      return None
    raise _missing(record, key, format)
  value = record.data[key]
  if not isinstance(value, str):
    raise DataError(f"{record.where}: field {key!r} must be a string, got {type(value).__name__} {value!r}; "
                    "quote it")
  return value


def _is_int(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


# ------------------------------------------------------------------------------------------ formats


def _rationale(record: Record) -> Example:
  return rationale_example(record.data, record.where, each=record.unit)


def _gsm8k(record: Record) -> Example:
  """GSM8K: the answer's text before "####" is the rationale, with the calculator annotations ("<<48/2=24>>")
  removed since they repeat the step's arithmetic in a markup the student should not learn; after it, the
  final answer (thousands commas removed)."""
  question, answer = _text(record, "question", "gsm8k"), _text(record, "answer", "gsm8k")
  if "####" not in answer:
    raise DataError(f"{record.where}: field 'answer' has no '####'; GSM8K answers are \"<rationale> #### <final "
                    "answer>\" (for a plain answer use config.data.format='rationale')")
  final = gsm8k_final(answer)
  if not final:
    raise DataError(f"{record.where}: field 'answer' has nothing after '####'; write the final answer after it")
  rationale = _CALCULATOR.sub("", answer.rpartition("####")[0]).strip()
  return Example(question=question, rationale=rationale, answer=final, task="gsm8k")


def _level(record: Record) -> int:
  value = record.data.get("level", 0)
  if _is_int(value) and value >= 0:
    return value
  if isinstance(value, str):
    m = re.fullmatch(r"\s*(?:level\s*)?(\d+|\?)\s*", value, re.IGNORECASE)
    if m:
      return 0 if m.group(1) == "?" else int(m.group(1))
  raise DataError(f"{record.where}: field 'level' must be like \"Level 3\" or a non-negative integer, got "
                  f"{value!r}; fix it or drop the field")


def _math(record: Record) -> Example:
  """MATH: the answer is the record's "answer" when present (as in MATH-500), else the last \\boxed{} of the
  solution; the whole solution is the rationale; "Level 3" is difficulty 3."""
  problem = _text(record, "problem", "math")
  solution = _text(record, "solution", "math", optional="answer" in record.data) or ""
  if "answer" in record.data:
    value = record.data["answer"]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
      value = str(value)
    elif not isinstance(value, str):
      raise DataError(f"{record.where}: field 'answer' must be a string, got {type(value).__name__} {value!r}")
    answer, fix = value.strip(), "give the final answer in 'answer'"
  else:
    answer = last_boxed(solution)
    if answer is None:
      raise DataError(f"{record.where}: field 'solution' has no \\boxed{{...}} final answer and the record has "
                      "no 'answer' field; add one of them")
    fix = "put the final answer inside \\boxed{...}"
  if not answer:
    raise DataError(f"{record.where}: the final answer is empty; {fix}")
  return Example(question=problem, rationale=solution.strip(), answer=answer, difficulty=_level(record), task="math")


def _choices(record: Record) -> tuple[list[str], list[str] | None]:
  """(choice texts, their labels or None) from a list or ARC's {"text": [...], "label": [...]}."""
  if "choices" not in record.data:
    raise _missing(record, "choices", "choice")
  raw, labels = record.data["choices"], None
  if isinstance(raw, dict):
    if not isinstance(raw.get("text"), list) or not isinstance(raw.get("label"), list):
      raise DataError(f"{record.where}: field 'choices' is a mapping without \"text\" and \"label\" lists; give "
                      "a list of strings or {\"text\": [...], \"label\": [...]}")
    raw, labels = raw["text"], [str(label).strip() for label in raw["label"]]
    if len(labels) != len(raw):
      raise DataError(f"{record.where}: field 'choices' has {len(raw)} texts but {len(labels)} labels; give one "
                      "label per text")
  elif not isinstance(raw, list):
    raise DataError(f"{record.where}: field 'choices' must be a list of strings (or {{\"text\": [...], \"label\": "
                    f"[...]}}), got {type(raw).__name__} {raw!r}")
  if not 2 <= len(raw) <= len(LETTERS):
    raise DataError(f"{record.where}: field 'choices' has {len(raw)} entries; give between 2 and {len(LETTERS)}")
  texts = []
  for i, text in enumerate(raw):
    if isinstance(text, (int, float)) and not isinstance(text, bool):
      text = str(text)
    if not isinstance(text, str):
      raise DataError(f"{record.where}: choice {i} in field 'choices' must be a string, got "
                      f"{type(text).__name__} {text!r}")
    texts.append(text.strip())
  return texts, labels


def _choice_index(record: Record, n: int, labels: list[str] | None) -> int:
  key = "answer" if "answer" in record.data else "answerKey" if "answerKey" in record.data else None
  if key is None:
    raise _missing(record, "answer", "choice")
  value, letters = record.data[key], LETTERS[:n]
  if _is_int(value):
    if 0 <= value < n:
      return value
    raise DataError(f"{record.where}: field {key!r} is {value}, not a 0-based index of the {n} choices "
                    f"(0..{n - 1})")
  if isinstance(value, str):
    label = value.strip()
    if labels and label in labels:
      return labels.index(label)
    if len(label) == 1 and label.upper() in letters:
      return letters.index(label.upper())
  named = f"one of the labels {labels}" if labels else f"a letter {letters[0]}-{letters[-1]}"
  raise DataError(f"{record.where}: field {key!r} is {value!r}, which names no choice; give {named} or a 0-based "
                  "integer index")


def _choice(record: Record) -> Example:
  """Multiple choice: the question lists its choices as lines "A. ...", whatever labels the file used (ARC's
  "1".."4" too), and the answer is the letter; Example.meta holds the valid letters for the verifier."""
  question = _text(record, "question", "choice")
  texts, labels = _choices(record)
  index = _choice_index(record, len(texts), labels)
  letters = tuple(LETTERS[:len(texts)])
  rationale = _text(record, "rationale", "choice", optional=True)
  if rationale is None:
    rationale = _text(record, "explanation", "choice", optional=True) or ""
  lines = [question.strip()] + [f"{letter}. {text}" for letter, text in zip(letters, texts)]
  return Example(question="\n".join(lines), rationale=rationale.strip(), answer=letters[index], task="choice",
                 meta=letters)


_CONVERTERS = {"rationale": _rationale, "gsm8k": _gsm8k, "math": _math, "choice": _choice}
