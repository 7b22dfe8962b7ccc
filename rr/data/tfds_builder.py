"""Writing rr Examples as a TFDS dataset in array_record format (no TensorFlow): `python -m rr.data.prepare`.

Features are the Example's fields: question, rationale, answer, task (text), difficulty (int32) and meta (the
hashable tuple, as JSON text). Records keep file order (shuffling disabled), so a split reads back equal to
the file it came from.

TFDS locates a builder through the module that defines it, so the class is made here, in a package module,
not in a script. It is made per dataset name (the dataset's directory is named after the builder) and never
registered, so one process may build several datasets and no name clashes with TFDS's own catalogue.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from typing import Mapping, Sequence

from rr.data.errors import DataError
from rr.tasks import Example

DATASET_VERSION = "1.0.0"
NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]*")
TEXT_FIELDS = ("question", "rationale", "answer", "task")


def check_name(name: str) -> None:
  if not NAME_PATTERN.fullmatch(name or ""):
    raise DataError(f"dataset name {name!r} is not a TFDS name; use lowercase letters, digits and '_', starting "
                    "with a letter (e.g. gsm8k_main)")


def dataset_dir(data_dir: str, name: str) -> str:
  return os.path.join(os.path.expanduser(data_dir), name)


def check_new(name: str, data_dir: str) -> None:
  """DataError unless `name` is a valid TFDS name not yet taken in data_dir: rr never overwrites a dataset."""
  check_name(name)
  target = dataset_dir(data_dir, name)
  if os.path.exists(target) and not (os.path.isdir(target) and not os.listdir(target)):  # an empty dir is free
    raise DataError(f"TFDS dataset {name!r} already exists at {target}; rr never overwrites a dataset: pass another "
                    "--name or --data-dir, or delete that directory first")


def _features():
  import numpy as np
  import tensorflow_datasets as tfds

  fields = {key: tfds.features.Text() for key in TEXT_FIELDS + ("meta",)}
  fields["difficulty"] = tfds.features.Scalar(dtype=np.int32)
  return tfds.features.FeaturesDict(fields)


def to_features(example: Example) -> dict:
  row = {key: getattr(example, key) for key in TEXT_FIELDS}
  row["difficulty"] = int(example.difficulty)
  row["meta"] = json.dumps(list(example.meta))
  return row


def _tuples(value):
  return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def from_features(row: Mapping) -> Example:
  """The Example of one decoded record (text comes back as bytes from an array_record data source)."""
  text = {key: row[key].decode("utf-8") if isinstance(row[key], bytes) else str(row[key])
          for key in TEXT_FIELDS + ("meta",)}
  return Example(question=text["question"], rationale=text["rationale"], answer=text["answer"],
                 difficulty=int(row["difficulty"]), task=text["task"], meta=_tuples(json.loads(text["meta"])))


def builder_class(name: str, splits: Mapping[str, Sequence[Example]], description: str = ""):
  """A GeneratorBasedBuilder class called `name` that writes `splits` ({split name: examples})."""
  import tensorflow_datasets as tfds

  dataset_name = name

  class RrExamples(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """rr Examples written by python -m rr.data.prepare."""
    name = dataset_name
    VERSION = tfds.core.Version(DATASET_VERSION)
    RELEASE_NOTES = {DATASET_VERSION: "Written by python -m rr.data.prepare."}

    def _info(self):
      return self.dataset_info_from_configs(description=description, features=_features(),
                                            disable_shuffling=True)

    def _split_generators(self, dl_manager):
      return {split: self._generate_examples(examples) for split, examples in splits.items()}

    def _generate_examples(self, examples):
      for i, example in enumerate(examples):
        yield i, to_features(example)

  return RrExamples


def write_dataset(name: str, data_dir: str, splits: Mapping[str, Sequence[Example]], description: str = "") -> str:
  """Writes the splits as array_record files under data_dir/name/DATASET_VERSION and returns that directory.
  Refuses (DataError) when data_dir/name already exists."""
  import tensorflow_datasets as tfds

  check_new(name, data_dir)
  tfds.disable_progress_bar()
  builder = builder_class(name, splits, description)(data_dir=os.path.expanduser(data_dir),
                                                      file_format="array_record")
  with tempfile.TemporaryDirectory() as downloads:  # nothing is downloaded; keeps data_dir free of downloads/
    builder.download_and_prepare(download_dir=downloads)
  return os.path.join(dataset_dir(data_dir, name), DATASET_VERSION)
