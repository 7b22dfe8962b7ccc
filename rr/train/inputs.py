"""What a run trains and evaluates on, read from the config: tokenizer, train and held-out examples.

Everything here runs before the first step, so a missing file or an empty data set stops the run with one
message before any compile or checkpoint happens.
"""

from __future__ import annotations

import dataclasses

from rr import tasks
from rr.config import ConfigError
from rr.data import DataError, load_jsonl, load_tokenizer


@dataclasses.dataclass
class RunInputs:
  tokenizer: object
  train: list
  test: list


def load_inputs(config) -> RunInputs:
  tokenizer = load_tokenizer(config.tokenizer.kind, config.tokenizer.path)
  data = config.data
  if data.source == "task":
    if data.task not in tasks.TASKS:
      raise ConfigError(f"config.data.task={data.task!r} is not a task; choose one of {sorted(tasks.TASKS)}")
    task = tasks.get_task(data.task)
    train = tasks.make_split(task, "train", data.train_size, data.difficulty, config.seed)
    test = tasks.make_split(task, "test", data.test_size, data.difficulty, config.seed + 1)
  else:
    train = load_jsonl(data.train_path)
    test = load_jsonl(data.test_path) if data.test_path else []
  if not train:
    raise DataError("the training set is empty; check config.data")
  return RunInputs(tokenizer=tokenizer, train=train, test=test)
