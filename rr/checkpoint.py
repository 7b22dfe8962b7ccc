"""Checkpoints of a run: train state plus a JSON record of what wrote it, through orbax.

The JSON record (model config, vocabulary size, step) is read before any array is restored, so a checkpoint
from another model shape or tokenizer is refused with a message, not a shape error deep in orbax. Nothing
here deletes or overwrites a checkpoint the run did not write itself: a step that already exists is never
saved over, and unreadable checkpoints are reported, not cleaned up.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp

from rr.errors import UserError


class CheckpointError(UserError):
  """A checkpoint directory is corrupt or was written by a different model or tokenizer."""


class Checkpoints:
  """The checkpoints of one run, in `<workdir>/checkpoints/<step>/`."""

  def __init__(self, directory: str, keep: int = 0):
    self.directory = os.path.abspath(directory)
    if os.path.exists(self.directory) and not os.path.isdir(self.directory):
      raise CheckpointError(f"checkpoint path {self.directory} exists and is not a directory")
    options = ocp.CheckpointManagerOptions(max_to_keep=keep or None, create=True,
                                           enable_async_checkpointing=False)
    try:
      self._manager = ocp.CheckpointManager(self.directory, options=options)
    except Exception as e:  # orbax reads step folders here: a broken one surfaces now
      raise CheckpointError(f"cannot read checkpoints in {self.directory}: {type(e).__name__}: {e}. "
                            "Move that directory aside or pass another --workdir.") from e

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state: Any, record: dict) -> None:
    """Writes `state` (a pytree) and `record` (JSON) for `step`; an existing step is left as it is."""
    if step in self._manager.all_steps():
      return
    self._manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                      record=ocp.args.JsonSave(record)))
    self._manager.wait_until_finished()

  def read_record(self, step: int) -> dict:
    path = os.path.join(self.directory, str(step), "record")
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(record=ocp.args.JsonRestore()))
      return dict(restored["record"])
    except Exception as e:
      raise CheckpointError(f"checkpoint {os.path.dirname(path)} is unreadable (its record: "
                            f"{type(e).__name__}: {e}). Move it aside or pass another --workdir; "
                            "rr never deletes checkpoints.") from e

  def restore(self, step: int, abstract_state: Any) -> Any:
    """Restores `step` into the shapes and shardings of `abstract_state` (callers check the record first:
    rr.train.state.check_record)."""
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract_state)))
    except Exception as e:
      raise CheckpointError(f"checkpoint {self.directory}/{step} could not be restored "
                            f"({type(e).__name__}: {str(e)[:300]}). It may be corrupt or incomplete: "
                            "move it aside (rr never deletes checkpoints) or pass another --workdir.") from e
    return _in_layout_of(abstract_state, restored["state"], f"{self.directory}/{step}")

  def read_params(self, step: int) -> Any:
    """The params of `step` as saved (host arrays, orbax's own container types), without a target."""
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
    except Exception as e:
      raise CheckpointError(f"checkpoint {self.directory}/{step} could not be read ({type(e).__name__}: "
                            f"{str(e)[:300]}); it may be corrupt") from e
    return restored["state"]["params"]

  def restore_params(self, step: int, like_params: Any) -> Any:
    """Only the params of `step`, placed like `like_params` (e.g. to start RL from an SFT run)."""
    raw = self.read_params(step)
    params = _in_layout_of(like_params, raw, f"{self.directory}/{step}")
    return jax.tree.map(lambda x, like: jax.device_put(x, like.sharding).astype(like.dtype), params, like_params)

  def close(self) -> None:
    self._manager.close()


def _in_layout_of(abstract: Any, restored: Any, where: str) -> Any:
  """Puts restored leaves back into the run's pytree types (orbax returns optax named tuples as tuples)."""
  want, got = jax.tree.leaves(abstract), jax.tree.leaves(restored)
  if len(want) != len(got) or any(w.shape != g.shape for w, g in zip(want, got)):
    raise CheckpointError(f"checkpoint {where} holds a different state layout than this run expects; "
                          "use the config that wrote it or pass a new --workdir")
  return jax.tree.unflatten(jax.tree.structure(abstract), got)
