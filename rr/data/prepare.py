"""`python -m rr.data.prepare --format gsm8k --train FILE [--test FILE] --name NAME --data-dir DIR`.

Converts local JSONL / Parquet files (type from the extension) into a TFDS dataset in array_record format
that `config.data.source=tfds` reads without TensorFlow: splits "train" and "test", records normalised to rr
Examples (rr.data.benchmarks) in file order. An existing dataset is never overwritten. Every user error is
one line on stderr and exit status 2, before anything is written.
"""

from __future__ import annotations

import argparse
import os
import sys

from rr.data.benchmarks import FORMATS, file_kind, load_examples
from rr.data.errors import DataError
from rr.data.tfds_builder import check_new, write_dataset

USAGE = ("usage: python -m rr.data.prepare --format {rationale,gsm8k,math,choice} --train FILE [--test FILE] "
         "--name NAME --data-dir DIR\n"
         "  e.g. python -m rr.data.prepare --format gsm8k --train gsm8k/main/train-00000-of-00001.parquet "
         "--test gsm8k/main/test-00000-of-00001.parquet --name gsm8k --data-dir ~/rr_data")


class _Parser(argparse.ArgumentParser):
  def error(self, message):
    raise DataError(f"{message}\n{USAGE}")


def parse_command_line(argv: list[str]) -> argparse.Namespace:
  parser = _Parser(prog="python -m rr.data.prepare", usage=USAGE, add_help=False, allow_abbrev=False)
  parser.add_argument("-h", "--help", action="store_true")
  parser.add_argument("--format", choices=FORMATS)
  parser.add_argument("--train")
  parser.add_argument("--test")
  parser.add_argument("--name")
  parser.add_argument("--data-dir")
  args = parser.parse_args(argv)
  if not args.help:
    missing = [flag for flag, value in (("--format", args.format), ("--train", args.train), ("--name", args.name),
                                        ("--data-dir", args.data_dir)) if not value]
    if missing:
      parser.error(f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} required")
  return args


def prepare(format: str, train: str, test: str | None, name: str, data_dir: str) -> tuple[str, dict[str, int]]:
  """Reads and checks every file, then writes the dataset; returns (its directory, {split: examples})."""
  check_new(name, data_dir)  # before reading files that may be large
  splits = {}
  for split, flag, path in (("train", "--train", train), ("test", "--test", test)):
    if path is None:
      continue
    path = os.path.expanduser(path)
    if not os.path.isfile(path):
      raise DataError(f"{flag} {path!r} does not exist; pass a local .jsonl or .parquet file")
    splits[split] = load_examples(file_kind(path), format, path)
  path = write_dataset(name, data_dir, splits, description=f"rr examples, format {format!r}")
  return path, {split: len(examples) for split, examples in splits.items()}


def main(argv: list[str] | None = None) -> int:
  from rr.errors import UserError

  argv = sys.argv[1:] if argv is None else argv
  try:
    args = parse_command_line(argv)
    if args.help:
      print(USAGE)
      return 0
    path, counts = prepare(args.format, args.train, args.test, args.name, args.data_dir)
  except UserError as e:
    print(f"rr: error: {e}", file=sys.stderr)
    return 2
  sizes = ", ".join(f"{split} {count}" for split, count in counts.items())
  print(f"rr.data.prepare: wrote {args.name} ({sizes} examples, format {args.format}) to {path}; train on it with "
        f"--config.data.source=tfds --config.data.format={args.format} --config.data.tfds_name={args.name} "
        f"--config.data.tfds_dir={args.data_dir}", file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())
