"""Checkpoint conversion on the command line, Hugging Face <-> rr:

  python -m rr.convert --from-hf HF_DIR --to WORKDIR     an rr checkpoint (WORKDIR/checkpoints/0) of the HF model
  python -m rr.convert --from WORKDIR --to-hf HF_DIR     the latest rr checkpoint as an HF directory
                       [--dtype bfloat16]               ... with bfloat16 weights (default float32)

WORKDIR is a run's --workdir (or its checkpoints/ directory); a LoRA run's adapters are merged into the exported
weights (rr.checkpoint.Checkpoints.policy_params). A run that used a Hugging Face tokenizer recorded
its directory; --to-hf copies its tokenizer files (and generation_config.json) beside the weights, so the result
loads as a whole model in transformers or vLLM. Nothing is written over: an existing rr
checkpoint or HF model at the target stops the command with one line (exit 2), as does an unreadable source.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys

from rr.errors import UserError


class ConvertError(UserError):
  """A bad source or target for `python -m rr.convert`; the message names it."""


def hf_to_rr(hf_dir: str, workdir: str) -> str:
  from rr import models
  from rr.checkpoint import Checkpoints, find_checkpoints_dir

  if not os.path.isdir(hf_dir):
    raise ConvertError(f"--from-hf {hf_dir} is not a directory; pass a local Hugging Face model directory")
  target = find_checkpoints_dir(workdir)
  if os.path.isdir(target) and os.listdir(target):
    raise ConvertError(f"--to {workdir} already holds rr checkpoints in {target}; pass a new directory "
                       "(rr never overwrites a checkpoint)")
  try:
    cfg, params = models.from_hf(hf_dir)
  except models.HFCheckpointError as e:
    raise ConvertError(f"--from-hf {hf_dir}: {e}") from e
  from rr.train.state import run_record

  has_tokenizer = any(os.path.isfile(os.path.join(hf_dir, name)) for name in ("tokenizer.json", "tokenizer_config.json"))
  vocab_size = _tokenizer_vocab(hf_dir) if has_tokenizer else cfg.vocab_size
  checkpoints = Checkpoints(target)
  checkpoints.save(0, {"step": 0, "params": params},
                   {**run_record(cfg, vocab_size, hf_dir if has_tokenizer else ""), "source": os.path.abspath(hf_dir)})
  checkpoints.close()
  return os.path.join(target, "0")


def _tokenizer_vocab(hf_dir: str) -> int:
  """The vocabulary of the directory's own tokenizer: what runs started from this checkpoint will record."""
  from rr.data import DataError, HFTokenizer

  try:
    return HFTokenizer.from_dir(hf_dir).vocab_size
  except DataError as e:
    raise ConvertError(f"--from-hf {hf_dir}: {e}") from e


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "chat_template.jinja", "vocab.json", "merges.txt", "tokenizer.model", "generation_config.json")


def _copy_tokenizer(record: dict, hf_dir: str) -> list[str]:
  """Copies the recorded tokenizer directory's files into the export; returns the names copied."""
  source = record.get("tokenizer_dir", "")
  copied = []
  for name in TOKENIZER_FILES if source and os.path.isdir(source) else ():
    if os.path.isfile(os.path.join(source, name)) and not os.path.exists(os.path.join(hf_dir, name)):
      shutil.copyfile(os.path.join(source, name), os.path.join(hf_dir, name))
      copied.append(name)
  if source and not copied:
    print(f"rr.convert: the run's tokenizer directory {source} is gone or holds no tokenizer files; copy them "
          f"into {hf_dir} yourself", file=sys.stderr)
  return copied


def rr_to_hf(workdir: str, hf_dir: str, dtype: str = "float32") -> str:
  from rr import models
  from rr.checkpoint import Checkpoints, find_checkpoints_dir

  source = find_checkpoints_dir(workdir)
  if not os.path.isdir(source):
    raise ConvertError(f"--from {workdir} holds no rr checkpoints; pass a run's --workdir (or its checkpoints/)")
  checkpoints = Checkpoints(source)
  step = checkpoints.latest_step()
  if step is None:
    raise ConvertError(f"--from {source} holds no checkpoint yet")
  record = checkpoints.read_record(step)
  try:
    cfg = models.ModelConfig(**record["model"])
  except (KeyError, TypeError, ValueError) as e:
    raise ConvertError(f"--from {source}/{step} has an unreadable model record ({e}); was it written by rr?") from e

  params = checkpoints.policy_params(step)
  checkpoints.close()
  try:
    models.to_hf(cfg, params, hf_dir, dtype)
  except models.HFCheckpointError as e:
    raise ConvertError(f"--to-hf {e}") from e
  _copy_tokenizer(record, hf_dir)
  return hf_dir


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m rr.convert", description=__doc__.splitlines()[0])
  parser.add_argument("--from-hf", dest="from_hf", help="a local Hugging Face model directory")
  parser.add_argument("--to", help="the rr run directory to write (its checkpoints/0)")
  parser.add_argument("--from", dest="from_rr", help="an rr run directory or checkpoints/ directory")
  parser.add_argument("--to-hf", dest="to_hf", help="the Hugging Face directory to write")
  parser.add_argument("--dtype", choices=("float32", "bfloat16"),
                      help="the dtype of the weights --to-hf writes (default float32)")
  args = parser.parse_args(argv)
  try:
    if args.from_hf and args.to and not (args.from_rr or args.to_hf):
      if args.dtype:
        raise ConvertError("--dtype applies to --to-hf only; an rr checkpoint keeps the HF weights in float32")
      print(f"rr.convert: wrote {hf_to_rr(args.from_hf, args.to)}", file=sys.stderr)
    elif args.from_rr and args.to_hf and not (args.from_hf or args.to):
      print(f"rr.convert: wrote {rr_to_hf(args.from_rr, args.to_hf, args.dtype or 'float32')}", file=sys.stderr)
    else:
      raise ConvertError("pass either --from-hf HF_DIR --to WORKDIR or --from WORKDIR --to-hf HF_DIR")
  except UserError as e:
    print(f"rr: error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
