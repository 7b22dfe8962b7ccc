"""Imports point one way, down the floors of the design notes (../shared/design/ARCHITECTURE.md): a lower
floor never imports a higher one, not even inside a function, so e.g. rr.train.memory cannot reach for
rr.main's command line and rr.eval cannot reach into rr.train. Read from the source with `ast`."""

import ast
import pathlib

import pytest

RR = pathlib.Path(__file__).resolve().parent.parent / "rr"
# Higher number = higher floor. Entry points sit on top; modules on one floor may import each other.
FLOORS = {"main": 6, "convert": 6, "experiment": 6, "train": 5, "eval": 4, "sampler": 3, "rewards": 2, "data": 2, "models": 1,
          "tasks": 1, "losses": 1, "config": 1, "cli": 1, "sharding": 1, "checkpoint": 1, "registry": 1, "files": 0,
          "errors": 0}


def _part(module: str) -> str:
  return module.split(".")[1]


def _imports(path: pathlib.Path) -> set[str]:
  """Every rr.* module the file imports, at any depth of the file (function-level imports included)."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      found |= {alias.name for alias in node.names if alias.name.startswith("rr.")}
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      if node.module == "rr":
        found |= {f"rr.{alias.name}" for alias in node.names}
      elif node.module.startswith("rr."):
        found.add(node.module)
  return found


def _modules():
  for path in sorted(RR.rglob("*.py")):
    parts = path.relative_to(RR.parent).with_suffix("").parts
    if len(parts) > 1 and parts[1] != "__init__":  # rr/__init__.py only loads parts lazily
      yield ".".join(parts), path


def test_every_part_has_a_floor():
  assert {_part(name) for name, _ in _modules()} <= set(FLOORS), "add the new part of rr to FLOORS"


@pytest.mark.parametrize("name,path", list(_modules()), ids=lambda x: str(x) if isinstance(x, str) else "")
def test_no_import_goes_up_a_floor(name, path):
  here = FLOORS[_part(name)]
  upward = sorted(m for m in _imports(path) if _part(m) in FLOORS and FLOORS[_part(m)] > here)
  assert not upward, f"{name} (floor {here}) imports {upward} from a higher floor"
