"""Training: one loop (rr.train.loop) driven by the trainer that `config.trainer` names.

`rr.train.run(config, workdir)` is the Python entry the command line and notebooks share. Trainers live in a
registry (rr.registry): the built-ins "sft", "grpo", "stages", "teach", "gkd" and "dpo" register themselves when their
modules load, and a user's module registers its own the same way:

  @rr.train.TRAINERS.register("my_trainer")
  def run(config, workdir, should_stop=None) -> dict: ...
"""

from __future__ import annotations

import importlib

from rr.registry import Registry

TRAINERS = Registry("trainer", "config.trainer")
# modules under rr.train that register the trainer of the same name
_BUILT_IN = ("sft", "grpo", "stages", "teach", "gkd", "dpo")


def trainer(name: str, where: str = "config.trainer"):
  """The trainer registered as `name` (a built-in's module is imported first); RegistryError naming `where`."""
  for module in (name,) if name in _BUILT_IN else _BUILT_IN:  # an unknown name: every built-in, for "did you mean"
    importlib.import_module(f"rr.train.{module}")
  return TRAINERS.get(name, where=where)


def run(config, workdir: str, **kwargs) -> dict:
  """Runs the trainer named by `config.trainer` in `workdir` and returns its summary (a dict of scalars), with
  config.mesh.rules in force for every sharding it builds (rr.sharding.rules_from_config)."""
  from rr import sharding
  from rr.config import check_workdir_trainer

  check_workdir_trainer(config, workdir)
  with sharding.rules_from_config(config):
    return trainer(config.trainer)(config, workdir, **kwargs)
