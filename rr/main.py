"""`python -m rr.main --config configs/<x>.py[:arg] [--config.a.b=value ...] [--workdir DIR]`.

Only parses the command line and calls the trainer the config names, so the same `train.run(config,
workdir)` runs from a notebook. Every user error ends here as one line on stderr and exit status 2; a run stopped
by a non-finite loss or gradient exits 1 (its last good checkpoint kept), a finished or interrupted one 0.
"""

from __future__ import annotations

import os
import sys
import tempfile

from rr import cli, files

USAGE = ("usage: python -m rr.main --config configs/<name>.py[:arg] [--config.KEY=VALUE ...] [--workdir DIR]\n"
         "  e.g. python -m rr.main --config configs/default.py:runlocal --config.train.steps=50 --workdir /tmp/run")


def parse_command_line(argv: list[str]):
  """Returns (config spec, overrides [(dotted key, text)], workdir or None)."""
  return cli.parse_command_line(argv, USAGE)


def initialize_distributed() -> None:
  """Joins a multi-process job. TPU pods and SLURM describe themselves; a hand-made job (launch/
  local_multiprocess.sh) names its coordinator, process count and id in JAX_* environment variables."""
  import jax

  kwargs = {}
  if "JAX_COORDINATOR_ADDRESS" in os.environ:
    kwargs = dict(coordinator_address=os.environ["JAX_COORDINATOR_ADDRESS"],
                  num_processes=int(os.environ["JAX_NUM_PROCESSES"]), process_id=int(os.environ["JAX_PROCESS_ID"]))
  if os.environ.get("JAX_PLATFORMS", "") == "cpu":
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(**kwargs)


def use_compilation_cache() -> None:
  """JAX's persistent compilation cache in $RR_JAX_CACHE (default ~/.cache/rr/jax; "" turns it off), so a rerun, a
  resume or the next seed of an experiment loads its compiled steps instead of compiling them again. A cache the
  caller set already (a notebook, the test suite) is kept."""
  import jax

  path = os.environ.get("RR_JAX_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "rr", "jax"))
  if path and jax.config.jax_compilation_cache_dir is None:
    jax.config.update("jax_compilation_cache_dir", path)


def main(argv: list[str] | None = None) -> int:
  argv = sys.argv[1:] if argv is None else argv

  def body():
    from rr.config import load_config

    spec, overrides, workdir = parse_command_line(argv)
    config = load_config(spec, overrides)
    if workdir is None:
      workdir = tempfile.mkdtemp(prefix="rr_run_")
      print(f"rr: no --workdir given; writing to {workdir}", file=sys.stderr)
    files.check_storage(workdir)  # a gs:// workdir without gcsfs: one error now, not a local "gs:" folder
    use_compilation_cache()
    if os.environ.get("RR_DISTRIBUTED") == "1":  # set by launch/: one process per host or GPU
      initialize_distributed()
    from rr import train  # imported late: jax start-up is not needed to report a config typo
    summary = train.run(config, files.absolute(workdir))
    if summary.get("failed"):  # a non-finite step stopped it: the loop said which term; a script must see it too
      print("rr: the run stopped on a non-finite step (see above); exit status 1", file=sys.stderr)
      return 1
    return 0

  return cli.exit_status(body)


if __name__ == "__main__":
  sys.exit(main())
