"""The command line rr's entry points share (`rr.main`, `rr.eval`, `rr.train.memory`): `--config FILE[:arg]`,
`--config.KEY=VALUE` overrides (or `--config.KEY VALUE`), `--workdir DIR`, and one way a user error ends: one
line on stderr and exit status 2, before any work.

It sits on the config floor, so a lower module (rr.train.memory) never has to import `rr.main` for it.
"""

from __future__ import annotations

import sys
from typing import Callable, Sequence

CONFIG_PREFIX = "--config."


def take_overrides(args: Sequence[str], fail: Callable[[str], None]) -> list[tuple[str, str]]:
  """[(dotted key, text)] from `--config.KEY=VALUE` / `--config.KEY VALUE` items; `fail(message)` raises for
  anything else, so each entry point names its own usage."""
  overrides, i = [], 0
  while i < len(args):
    name, eq, value = args[i].partition("=")
    if not name.startswith(CONFIG_PREFIX):
      fail(f"unknown argument {args[i]!r}")
    if not eq:
      if i + 1 >= len(args):
        fail(f"{name} needs a value")
      value, i = args[i + 1], i + 1
    overrides.append((name[len(CONFIG_PREFIX):], value))
    i += 1
  return overrides


def parse_command_line(argv: Sequence[str], usage: str) -> tuple[str, list[tuple[str, str]], str | None]:
  """(config spec, overrides, workdir or None) for `--config SPEC [--config.KEY=VALUE ...] [--workdir DIR]`;
  `-h` prints `usage` and exits 0; anything else is a ConfigError that ends with `usage`."""
  from rr.config import ConfigError

  def fail(message: str) -> None:
    raise ConfigError(f"{message}\n{usage}")

  spec, workdir, rest, i = None, None, [], 0
  while i < len(argv):
    arg = argv[i]
    if arg in ("-h", "--help"):
      print(usage)
      sys.exit(0)
    name, eq, value = arg.partition("=")
    if name not in ("--config", "--workdir"):
      rest.append(arg)
      if not eq and name.startswith(CONFIG_PREFIX) and i + 1 < len(argv):
        rest.append(argv[i + 1])
        i += 1
      i += 1
      continue
    if not eq:
      if i + 1 >= len(argv):
        fail(f"{name} needs a value")
      value, i = argv[i + 1], i + 1
    if name == "--config":
      spec = value
    else:
      workdir = value
    i += 1
  overrides = take_overrides(rest, fail)
  if spec is None:
    fail("--config is required")
  return spec, overrides, workdir


def exit_status(body: Callable[[], int | None]) -> int:
  """Runs an entry point's body; a UserError (bad config, data, checkpoint) becomes one line on stderr and
  status 2, anything else propagates with its traceback (a bug, not the user's input)."""
  from rr.errors import UserError

  try:
    return body() or 0
  except UserError as e:
    print(f"rr: error: {e}", file=sys.stderr)
    return 2
