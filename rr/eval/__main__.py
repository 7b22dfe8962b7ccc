"""`python -m rr.eval --checkpoint DIR [--config configs/<task>.py[:arg]] [--k 1,4,16] [--samples N] ...`.

Without --config, the config is the one the run wrote into its workdir (config.json, or the newest
config.<n>.json a resume with changed keys wrote beside it); --config.KEY=VALUE overrides apply to either.

Evaluates a checkpoint on its config's held-out questions: greedy accuracy, unbiased pass@k, maj@k and
CoT-pass@k from --samples samples per question, accuracy by difficulty, lengths, ECE/Brier of stated
confidences with their coverage (how many completions state one: eval.json `confidence_coverage`). Writes eval.json, report.md, completions.jsonl and plots into --out (default <run workdir>/eval/).
Only parses the command line; the work is rr.eval.run. Every user error is one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import os
import sys

from rr import cli

USAGE = ("usage: python -m rr.eval --checkpoint DIR [--config configs/<name>.py[:arg]] [--config.KEY=VALUE ...]\n"
         "         [--k 1,4,16] [--samples N] [--temperature T] [--num-examples N] [--ece-bins B] [--out DIR]\n"
         "  e.g. python -m rr.eval --checkpoint /tmp/sft --config configs/sft.py --k 1,4,16 --samples 16")


class _Parser(argparse.ArgumentParser):
  def error(self, message):
    from rr.eval.run import EvalError
    raise EvalError(f"{message}\n{USAGE}")


def parse_command_line(argv: list[str]):
  parser = _Parser(prog="python -m rr.eval", usage=USAGE, add_help=False, allow_abbrev=False)
  parser.add_argument("-h", "--help", action="store_true")
  parser.add_argument("--checkpoint", default="")
  parser.add_argument("--config", default=None)
  parser.add_argument("--k", default="1,4,16")
  parser.add_argument("--samples", type=int, default=None, help="samples per question (default: the largest k)")
  parser.add_argument("--temperature", type=float, default=1.0)
  parser.add_argument("--num-examples", type=int, default=None)
  parser.add_argument("--ece-bins", type=int, default=10)
  parser.add_argument("--out", default=None)
  args, rest = parser.parse_known_args(argv)
  return args, cli.take_overrides(rest, parser.error)  # --config.KEY=VALUE or --config.KEY VALUE, as in rr.main


def main(argv: list[str] | None = None) -> int:
  argv = sys.argv[1:] if argv is None else argv

  def body():
    from rr.config import load_config

    args, overrides = parse_command_line(argv)
    if args.help:
      print(USAGE)
      return 0
    from rr.eval import run

    if not args.checkpoint:
      raise run.EvalError(f"--checkpoint is required (a run's --workdir or its checkpoints/ directory)\n{USAGE}")
    ks = run.parse_ks(args.k)
    run.check_sampling_flags(ks, max(ks) if args.samples is None else args.samples, args.temperature, args.ece_bins,
                             args.num_examples)
    _, workdir = run.resolve_checkpoint(args.checkpoint)  # a wrong directory is named before the config loads
    if args.config:  # given, it wins over the run's own config.json
      config = load_config(args.config, overrides)
      overrides = ()
    else:
      config = None  # the run's own, read by rr.eval.run.evaluate
    out = args.out or os.path.join(workdir, "eval")
    results = run.evaluate(args.checkpoint, config, k=ks, samples=args.samples, temperature=args.temperature,
                           num_examples=args.num_examples, ece_bins=args.ece_bins, out=out, overrides=overrides)
    headline = ", ".join(f"{key} {results[key]:.3f}" for key in ("accuracy", *(f"pass@{k}" for k in ks)))
    print(f"rr.eval: {headline}; wrote {os.path.abspath(out)}/eval.json and report.md", file=sys.stderr)

  return cli.exit_status(body)


if __name__ == "__main__":
  sys.exit(main())
