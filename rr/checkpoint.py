"""Checkpoints of a run: train state plus a JSON record of what wrote it, through orbax.

The JSON record (model config, vocabulary size, step) is read before any array is restored, so a checkpoint
from another model shape or tokenizer is refused with a message, not a shape error deep in orbax. Nothing
here deletes or overwrites a checkpoint the run did not write itself: a step that already exists is never
saved over, and unreadable checkpoints are reported, not cleaned up.

Saves are asynchronous, so the train loop runs on while orbax writes. `save` returns once orbax has its own
host copy of the state (the loop may then donate the arrays to the next step). orbax writes the step into
`<step>.orbax-checkpoint-tmp/` and renames it to `<step>/` only after every file is written (on a local disk
the rename is the commit: orbax/checkpoint/_src/path/atomicity.py, AtomicRenameTemporaryPath.finalize), and it
lists a step only under its final name (step.py, StandardNameFormat._build_metadata and is_path_finalized). A
run killed mid-save therefore leaves that temporary directory behind, which is never listed, restored or
counted as the latest step: a resume starts from the last complete one. orbax's own cleanup of temporary
directories on start is off, and when the run saves that step again rr first moves the leftover aside to
`<step>.unfinished-<time>/` (orbax would remove it to make room for the new write). On gs:// orbax writes into
`<step>/` itself and commits with its commit_success.txt (atomicity_defaults.py: CommitFileTemporaryPath), so
there is no temporary directory to keep there.

Every process of a multi-process job opens the same directory and calls `save` and `restore` with the same
step: orbax coordinates them (each writes its shards; the primary host, process 0, writes the JSON record and
the metadata and commits). Directories may be URIs (rr.files): orbax reads them through etils.epath as well.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
from typing import Any

import jax
import orbax.checkpoint as ocp

from rr import files
from rr.errors import UserError

# How orbax names a step directory still being written (orbax/checkpoint/_src/path/atomicity_types.py).
TMP_SUFFIX = ".orbax-checkpoint-tmp"

# Instances that may have a save in flight. Python stops its thread pools when the main thread ends, and orbax
# needs them to finish a write: a run ended by an exception (or never closed) would lose the save it had just
# started. So these are waited for first, from threading's exit hooks (atexit would run too late).
_OPEN: list[Checkpoints] = []


def _finish_saves_at_exit() -> None:
  for checkpoints in list(_OPEN):
    try:
      checkpoints.wait()
    except CheckpointError as e:
      print(f"rr: {e}", file=sys.stderr)


getattr(threading, "_register_atexit", atexit.register)(_finish_saves_at_exit)


def find_checkpoints_dir(path: str) -> str:
  """Where the checkpoints of `path` live: a run's --workdir -> its checkpoints/ (also when it does not exist
  yet, for a run about to write), while a directory named checkpoints, or one already holding <step>/ folders,
  is the checkpoints directory itself. The one resolver of "a workdir or its checkpoints/" in rr."""
  if os.path.basename(os.path.normpath(path)) == "checkpoints":
    return path
  nested = os.path.join(path, "checkpoints")
  if files.isdir(nested) or not files.isdir(path):
    return nested
  has_steps = any(name.isdigit() and files.isdir(os.path.join(path, name)) for name in files.listdir(path))
  return path if has_steps else nested


def directory_kind(path: str) -> str:
  """What a model directory holds: "rr" (rr checkpoints: a checkpoints/ folder or <step>/ folders), "hf" (a
  Hugging Face model: a config.json that is not an rr run's), or "" (neither). The one answer to "which model
  is this directory" for evaluation, conversion and frozen models."""
  from rr.config import is_run_config_file

  if not files.isdir(path):
    return ""
  if files.isdir(os.path.join(path, "checkpoints")) or any(
      name.isdigit() and files.isdir(os.path.join(path, name)) for name in files.listdir(path)):
    return "rr"
  config_json = os.path.join(path, "config.json")
  return "hf" if files.isfile(config_json) and not is_run_config_file(config_json) else ""


class CheckpointError(UserError):
  """A checkpoint directory is corrupt or was written by a different model or tokenizer."""


class Checkpoints:
  """The checkpoints of one run, in `<workdir>/checkpoints/<step>/`; `read_only` opens another run's, which is
  then neither created nor written."""

  def __init__(self, directory: str, keep: int = 0, read_only: bool = False):
    self.directory = files.absolute(directory)
    self.read_only = read_only
    if files.exists(self.directory) and not files.isdir(self.directory):
      raise CheckpointError(f"checkpoint path {self.directory} exists and is not a directory")
    for other in [c for c in _OPEN if c.directory == self.directory]:  # a rerun in this process: see its saves
      try:
        other.wait()
      except CheckpointError as e:
        print(f"rr: {e}", file=sys.stderr)
    # cleanup_tmp_directories=False: a step a crash left half-written stays on disk for the user to look at.
    options = ocp.CheckpointManagerOptions(max_to_keep=keep or None, create=not read_only, read_only=read_only,
                                           enable_async_checkpointing=True, cleanup_tmp_directories=False)
    try:
      self._manager = ocp.CheckpointManager(self.directory, options=options, item_handlers={
          "state": ocp.StandardCheckpointHandler(), "record": ocp.JsonCheckpointHandler()})
    except Exception as e:  # orbax reads step folders here: a broken one surfaces now
      raise CheckpointError(f"cannot read checkpoints in {self.directory}: {type(e).__name__}: {e}. "
                            "Move that directory aside or pass another --workdir.") from e

  def wait(self) -> None:
    """Blocks until the save in flight (if any) is complete on disk; a failed one is a CheckpointError here."""
    try:
      self._manager.wait_until_finished()
    except Exception as e:
      raise CheckpointError(f"writing a checkpoint into {self.directory} failed ({type(e).__name__}: "
                            f"{str(e)[:300]}); its unfinished files stay in a *{TMP_SUFFIX} directory there. "
                            "Check the disk (space, permissions) and resume: rr restarts from the last "
                            "complete step.") from e

  def latest_step(self) -> int | None:
    """The newest complete step (a save in flight is waited for; a half-written step never counts)."""
    self.wait()
    return self._manager.latest_step()

  def save(self, step: int, state: Any, record: dict) -> None:
    """Starts writing `state` (a pytree) and `record` (JSON) for `step` and returns while orbax writes; an
    existing step is left as it is. The next save, `wait` or `close` waits for this one."""
    if self.read_only:
      raise CheckpointError(f"checkpoints in {self.directory} were opened read-only; open them without "
                            "read_only=True to save")
    if step in self._manager.all_steps():  # includes a save still in flight
      return
    self._keep_unfinished(step)
    if self not in _OPEN:
      _OPEN.append(self)
    self._manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                      record=ocp.args.JsonSave(record)))

  def _keep_unfinished(self, step: int) -> None:
    """Moves a crash's leftover `<step>.orbax-checkpoint-tmp` aside before orbax writes that step again,
    since orbax would delete it first."""
    leftover = os.path.join(self.directory, f"{step}{TMP_SUFFIX}")
    if jax.process_index() != 0 or files.is_uri(leftover) or not os.path.isdir(leftover):
      return
    self.wait()  # our own save in flight is another step; never move under it
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside, n = os.path.join(self.directory, f"{step}.unfinished-{stamp}"), 1
    while os.path.exists(aside):
      n += 1
      aside = os.path.join(self.directory, f"{step}.unfinished-{stamp}-{n}")
    os.rename(leftover, aside)
    print(f"rr: {leftover} is a save of step {step} that never finished (the run stopped mid-write); kept as "
          f"{aside} and writing step {step} afresh. Delete it when you no longer need it.", file=sys.stderr)

  def read_record(self, step: int) -> dict:
    self.wait()
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
    self.wait()
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract_state)))
    except Exception as e:
      raise CheckpointError(f"checkpoint {self.directory}/{step} could not be restored "
                            f"({type(e).__name__}: {str(e)[:300]}). It may be corrupt or incomplete: "
                            "move it aside (rr never deletes checkpoints) or pass another --workdir.") from e
    return _in_layout_of(abstract_state, restored["state"], f"{self.directory}/{step}")

  def read_state(self, step: int) -> Any:
    """The whole state of `step` as saved (orbax's own container types) on this process's first device, whatever
    devices and processes saved it (a multi-host run's checkpoint read by one process)."""
    self.wait()
    try:
      device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
      target = jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=device),
                            self._manager.item_metadata(step)["state"])
      restored = self._manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))
    except Exception as e:
      raise CheckpointError(f"checkpoint {self.directory}/{step} could not be read ({type(e).__name__}: "
                            f"{str(e)[:300]}); it may be corrupt") from e
    return restored["state"]

  def read_params(self, step: int) -> Any:
    """The params of `step` as saved: a LoRA run's base without its adapters (see policy_params)."""
    return self.read_state(step)["params"]

  def policy_params(self, step: int, like: Any = None) -> Any:
    """The params checkpoint `step` computes with: its params, merged with its LoRA adapters when it has them
    (rr.models.state_params), so an export, an evaluation, a frozen model or a run started from it never sees a
    LoRA run's base alone. Host arrays as saved, or placed like `like` (ShapeDtypeStructs with shardings)."""
    from rr.models import state_params

    if "lora" not in self.read_record(step):
      return self.read_params(step) if like is None else self.restore_params(step, like)
    params = state_params(self.read_state(step))
    return params if like is None else self._placed_like(params, like, step)

  def restore_params(self, step: int, like_params: Any) -> Any:
    """Only the params of `step`, placed like `like_params` (e.g. to start RL from an SFT run)."""
    return self._placed_like(self.read_params(step), like_params, step)

  def _placed_like(self, params: Any, like_params: Any, step: int) -> Any:
    params = _in_layout_of(like_params, params, f"{self.directory}/{step}")
    return jax.tree.map(lambda x, like: jax.device_put(x, like.sharding).astype(like.dtype), params, like_params)

  def close(self) -> None:
    """Waits for the save in flight, then releases orbax's threads."""
    try:
      self.wait()
    finally:
      if self in _OPEN:
        _OPEN.remove(self)
    self._manager.close()


def _in_layout_of(abstract: Any, restored: Any, where: str) -> Any:
  """Puts restored leaves back into the run's pytree types (orbax returns optax named tuples as tuples)."""
  want, got = jax.tree.leaves(abstract), jax.tree.leaves(restored)
  if len(want) != len(got) or any(w.shape != g.shape for w, g in zip(want, got)):
    raise CheckpointError(f"checkpoint {where} holds a different state layout than this run expects; "
                          "use the config that wrote it or pass a new --workdir")
  return jax.tree.unflatten(jax.tree.structure(abstract), got)
