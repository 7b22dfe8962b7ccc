"""Teacher data as a run's train split (`config.data.rationales_path`): the "teach" trainer's data.jsonl (or a
teach workdir, which holds it), or any JSONL of {"question", "rationale", "answer"} records.

Each record's question is looked up in the train split the config builds, by its text, and the record becomes
a copy of that example with the record's rationale and answer: the example keeps its task, meta and difficulty,
so a generated task's verifier and step checker still read it. Several records of one question become several
examples; questions without a record drop out. A record whose question is not in the split means the split is
not the one the teacher sampled (another data.train_size, seed or difficulty): one DataError naming the line.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Sequence

from rr.config import ConfigError
from rr.data.errors import DataError
from rr.data.jsonl import rationale_example, read_jsonl
from rr.tasks import Example

DATA_FILE = "data.jsonl"  # what a teach run's workdir holds its records in
STAGE_PREFIX = "stage:"  # rr.train.stages resolves "stage:<name>" to that stage's workdir


def records_path(path: str, what: str = "config.data.rationales_path",
                 made_by: str = "a teach run's --workdir") -> str:
  """The JSONL file `path` names: itself, or a teach workdir's data.jsonl. `what` is the config key it came from
  and `made_by` the run that writes such files, both named in the errors."""
  if path.startswith(STAGE_PREFIX):
    raise ConfigError(f"{what}={path!r} names a stage, which only a job of stages resolves (config.trainer="
                      "'stages', the stage an earlier one); outside one, give the teach run's --workdir or its "
                      "data.jsonl")
  if os.path.isdir(path):
    inside = os.path.join(path, DATA_FILE)
    if not os.path.isfile(inside):
      raise DataError(f"{what}={path!r} is a directory without {DATA_FILE}; point it at a finished teach run's "
                      "--workdir (run that command again to finish it) or at a JSONL file")
    return inside
  if not os.path.isfile(path):
    raise DataError(f"{what}={path!r} does not exist; point it at {made_by} or a JSONL file of "
                    "{\"question\", \"rationale\", \"answer\"} records")
  return path


def with_teacher_rationales(train: Sequence[Example], path: str) -> list[Example]:
  """The train split replaced by the records of `path` (see the module doc), in the file's order."""
  path = records_path(path)
  by_question: dict[str, Example] = {}
  for example in train:
    by_question.setdefault(example.question, example)
  out = []
  for number, record in read_jsonl(path, expect="with \"question\", \"rationale\" and \"answer\""):
    where = f"{path}, line {number}"
    taught = rationale_example(record, where)
    example = by_question.get(taught.question)
    if example is None:
      raise DataError(f"{where}: question {taught.question[:60]!r} is not in this run's train split; the teacher "
                      "sampled another split, so config.data (train_size, difficulty, task or files) and "
                      "the seed of its questions (config.data.seed, else config.seed) must match the teach run's; to train "
                      "several seeds on one teacher's data, fix config.data.seed")
    out.append(dataclasses.replace(example, rationale=taught.rationale, answer=taught.answer))
  if not out:
    raise DataError(f"{path} holds no records: the teach run kept none (every sample was rejected; see its "
                    "summary.json rejected/* counts); loosen config.teach.filters or sample more")
  return out
