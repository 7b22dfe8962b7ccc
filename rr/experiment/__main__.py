"""`python -m rr.experiment experiments/<name>.py[:arg] [--dir DIR] [--seeds 0,1,2] [--report]`.

Only parses the command line; the work is rr.experiment.run. Exit status 0 when every run finished, 1 when a run
stopped unfinished (Ctrl-C, SIGTERM: the same command resumes), 2 for a user error (one line on stderr, before
any run starts).
"""

from __future__ import annotations

import argparse
import os
import sys

from rr import cli

USAGE = ("usage: python -m rr.experiment experiments/<name>.py[:arg] [--dir DIR] [--seeds 0,1,2] [--report]\n"
         "  --dir     where the runs and results go (default: <temp dir>/rr_experiment_<name>[_<arg>])\n"
         "  --seeds   the seeds to run instead of the experiment's own\n"
         "  --report  write results.md from the runs already there; train nothing")


class _Parser(argparse.ArgumentParser):
  def error(self, message):
    from rr.experiment import ExperimentError
    raise ExperimentError(f"{message}\n{USAGE}")


def parse_command_line(argv: list[str]) -> argparse.Namespace:
  parser = _Parser(prog="python -m rr.experiment", usage=USAGE, add_help=False, allow_abbrev=False)
  parser.add_argument("-h", "--help", action="store_true")
  parser.add_argument("experiment", nargs="?", default=None)
  parser.add_argument("--dir", default=None)
  parser.add_argument("--seeds", default=None)
  parser.add_argument("--report", action="store_true")
  args = parser.parse_args(argv)
  if args.help:
    return args
  if not args.experiment:
    parser.error("the experiment file is required")
  if args.seeds is not None:
    args.seeds = parse_seeds(args.seeds)
  return args


def parse_seeds(text: str) -> list[int]:
  """--seeds "0,1,2" -> [0, 1, 2] (distinct integers, in the order given)."""
  from rr.experiment import ExperimentError

  try:
    seeds = [int(part) for part in text.split(",")]
  except ValueError:
    seeds = []
  if not seeds or len(set(seeds)) < len(seeds):
    raise ExperimentError(f"--seeds {text!r} is not a comma-separated list of distinct integers, e.g. --seeds 0,1,2")
  return seeds


def main(argv: list[str] | None = None) -> int:
  argv = sys.argv[1:] if argv is None else argv

  def body():
    import rr.experiment as ex

    args = parse_command_line(argv)
    if args.help:
      print(USAGE)
      return 0
    experiment = ex.load_experiment(args.experiment)
    path, _, arg = args.experiment.partition(":")
    directory = os.path.abspath(args.dir or ex.default_directory(experiment, arg))
    if args.report:
      return report(experiment, directory, args.seeds, path)
    if args.dir is None:
      ex.say(f"no --dir given; the runs go to {directory}")
    complete = ex.run(experiment, directory, args.seeds, source=path)
    print_table(experiment, directory)
    return 0 if complete else 1

  return cli.exit_status(body)


def report(experiment, directory: str, seeds, source: str) -> int:
  """--report: the results of the runs in `directory` as they are now."""
  import rr.experiment as ex
  from rr.experiment import results

  shared, runs = ex.plan(experiment, directory, seeds, source)
  if not os.path.isfile(os.path.join(directory, ex.MARKER)):
    raise ex.ExperimentError(f"--dir {directory} holds no runs of an experiment (no {ex.MARKER}); pass the --dir "
                             "the experiment ran in")
  ex.claim_directory(directory, experiment, source)  # refuses another experiment's directory
  ex.say(f"wrote {', '.join(results.write(experiment, directory, shared, runs))} in {directory}")
  print_table(experiment, directory)
  return 0


def print_table(experiment, directory: str) -> None:
  """The row-per-method table of results.json on stdout, ready to paste."""
  import json

  from rr.experiment import results

  with open(os.path.join(directory, "results.json")) as f:
    found = json.load(f)
  print(results.main_table(found, {c.title: c.digits for c in experiment.columns}))


if __name__ == "__main__":
  sys.exit(main())
