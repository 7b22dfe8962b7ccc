"""Reading a split of a dataset that `python -m rr.data.prepare` wrote, by random access, without TensorFlow.

config.data.source = "tfds" reads config.data.tfds_dir/config.data.tfds_name through
`tfds.builder_from_directory` and an array_record data source: only the files are read, so the name never
resolves to a TFDS catalogue dataset and nothing is downloaded.
"""

from __future__ import annotations

import os

from rr.data.benchmarks import TASK_OF_FORMAT
from rr.data.errors import DataError
from rr.data.tfds_builder import dataset_dir, from_features
from rr.tasks import Example


def _how_to_build(name: str, data_dir: str) -> str:
  return (f"build it with: python -m rr.data.prepare --format FORMAT --train FILE --test FILE --name {name} "
          f"--data-dir {data_dir}")


def version_dir(name: str, data_dir: str) -> str:
  """data_dir/name/<newest version that holds dataset_info.json>; DataError naming the dataset otherwise."""
  root = dataset_dir(data_dir, name)
  versions = []
  if os.path.isdir(root):
    for entry in os.listdir(root):
      parts = entry.split(".")
      if len(parts) == 3 and all(p.isdigit() for p in parts) and os.path.isfile(
          os.path.join(root, entry, "dataset_info.json")):
        versions.append(tuple(int(p) for p in parts))
  if not versions:
    raise DataError(f"TFDS dataset {name!r} not found in {data_dir!r} (config.data.tfds_name / "
                    f"config.data.tfds_dir; no {root}/<version>/dataset_info.json); {_how_to_build(name, data_dir)}")
  return os.path.join(root, ".".join(map(str, max(versions))))


def read_split(name: str, data_dir: str, split: str, format: str | None = None) -> list[Example]:
  """The Examples of one split, in the order they were written. With `format`, the examples must be that
  format's (a dataset prepared with --format gsm8k read as config.data.format='math' is an error)."""
  import tensorflow_datasets as tfds

  path = version_dir(name, data_dir)
  try:
    builder = tfds.builder_from_directory(path)
  except Exception as e:  # a damaged or foreign directory: TFDS raises several kinds
    raise DataError(f"could not open TFDS dataset {name!r} at {path} ({type(e).__name__}: {e}); rebuild it "
                    "with python -m rr.data.prepare") from e
  splits = sorted(builder.info.splits.keys())
  if split not in splits:
    raise DataError(f"TFDS dataset {name!r} in {data_dir!r} has no split {split!r} (it has: {', '.join(splits)}); "
                    "set config.data.train_split / config.data.test_split to one of them, or rebuild the dataset "
                    "with python -m rr.data.prepare (--train and --test make splits 'train' and 'test')")
  source = builder.as_data_source(split=split)
  indices = list(range(len(source)))
  rows = source.__getitems__(indices) if hasattr(source, "__getitems__") else [source[i] for i in indices]
  examples = [from_features(row) for row in rows]
  if format is not None and examples:
    want = TASK_OF_FORMAT[format]
    found = {e.task for e in examples} - {want}
    if found:
      held = found.pop()
      prepared = next((f for f, task in TASK_OF_FORMAT.items() if task == held), held)
      raise DataError(f"TFDS dataset {name!r} split {split!r} holds {prepared!r} examples, but "
                      f"config.data.format={format!r}; set --config.data.format={prepared}")
  return examples
