"""What a run trains and evaluates on, read from the config: tokenizer, train and held-out examples.

config.data.source: "task" generates examples (rr.tasks) at config.data.difficulty, or at levels drawn uniformly
from data.difficulty..data.difficulty_max; "jsonl" / "parquet" read config.data.train_path and test_path laid out
as config.data.format (rr.data.benchmarks); "tfds" reads splits config.data.train_split and test_split of a
dataset that python -m rr.data.prepare wrote (rr.data.tfds_source), without TensorFlow.
config.data.format = "text" cuts plain text (a task's examples written out, or {"text"} records) into prefixes and
the next tokens to predict (rr.data.text_corpus), for RLP's info_gain reward.
config.data.rationales_path then swaps the train split for a teacher's records (rr.data.teacher_data).

Everything here runs before the first step, so a missing file or an empty data set stops the run with one
message before any compile or checkpoint happens.
"""

from __future__ import annotations

import dataclasses

from rr import tasks
from rr.config import ConfigError
from rr.data import DataError, load_examples
from rr.data.teacher_data import with_teacher_rationales
from rr.data.text_corpus import load_text_splits
from rr.data.tokenizers import tokenizer_from_config


@dataclasses.dataclass
class RunInputs:
  tokenizer: object
  train: list
  test: list


def load_inputs(config, need_train: bool = True) -> RunInputs:
  """The run's tokenizer and splits; `need_train=False` (rr.eval) accepts data with a test split alone."""
  tokenizer = tokenizer_from_config(config)
  data = config.data
  if data.format == "text":  # plain text cut into (prefix, next tokens) examples
    train, test = load_text_splits(config, tokenizer)
  elif data.source == "task":
    if data.task not in tasks.TASKS:
      raise ConfigError(f"config.data.task={data.task!r} is not a task; choose one of {sorted(tasks.TASKS)}")
    task = tasks.get_task(data.task)
    seed = data.seed if data.seed >= 0 else config.seed
    train = tasks.make_split(task, "train", data.train_size, data.difficulty, seed, data.difficulty_max)
    test_low = data.difficulty if data.test_difficulty < 0 else data.test_difficulty
    test_high = data.difficulty_max if data.test_difficulty_max < 0 else data.test_difficulty_max
    test = tasks.make_split(task, "test", data.test_size, test_low, seed + 1, test_high)
  elif data.source == "tfds":
    from rr.data.tfds_source import read_split  # imports tensorflow_datasets: only for TFDS data

    train = read_split(data.tfds_name, data.tfds_dir, data.train_split, data.format)
    test = read_split(data.tfds_name, data.tfds_dir, data.test_split, data.format) if data.test_split else []
  elif data.source in ("jsonl", "parquet"):
    train = load_examples(data.source, data.format, data.train_path) if data.train_path else []
    test = load_examples(data.source, data.format, data.test_path) if data.test_path else []
  else:
    raise ConfigError(f"config.data.source={data.source!r} is not one of task, jsonl, parquet, tfds")
  if need_train and not train:
    if data.source in ("jsonl", "parquet") and not data.train_path:
      raise DataError("config.data.train_path is not set, and this run trains; set it (a test file alone serves "
                      "python -m rr.eval)")
    raise DataError("the training set is empty; check config.data")
  if data.rationales_path:
    train = with_teacher_rationales(train, data.rationales_path)
  return RunInputs(tokenizer=tokenizer, train=train, test=test)
