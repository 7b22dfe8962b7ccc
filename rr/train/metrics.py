"""What a run leaves in its workdir: metrics.jsonl, TensorBoard events, summary.json and curves.png.

One writer serves every trainer. metrics.jsonl is appended to, so a resumed run continues the same file;
each line is one logged step: `{"step": N, "train/loss": ..., "eval/accuracy": ...}`.

The file never holds two rows for one (step, keys). A run that died without saving (SIGKILL, power loss)
logged steps its last checkpoint does not hold; the rerun restores that checkpoint and logs those steps
again, so `resume(step)` first moves every row past the restored step to metrics.dropped.jsonl (rewriting
metrics.jsonl atomically) and TensorBoard hides its events from there on (`purge_step`). A row logged again
at the restored step itself (a finished run rerun evaluates once more) replaces the earlier one, which goes
to metrics.dropped.jsonl too.

The workdir may be an object store's (rr.files): every file goes through rr.files, and TensorBoard's event file
is uploaded whole at each flush. Only the writer of process 0 is enabled in a job of several processes.
"""

from __future__ import annotations

import io
import json
import math
import os
import sys
from typing import Any

from rr import files


class MetricWriter:

  def __init__(self, workdir: str, enabled: bool = True):
    """`enabled=False` on every process but the first of a multi-process job: one process writes."""
    self.workdir = workdir
    self.enabled = enabled
    if enabled:
      files.makedirs(workdir)
    self.metrics_path = os.path.join(workdir, "metrics.jsonl")
    self.dropped_path = os.path.join(workdir, "metrics.dropped.jsonl")  # rows `resume` took out
    self._tb = None
    self._purge_step = None  # TensorBoard hides events from this step on (set by `resume`)
    self._restored_step = None
    self._replaceable: dict[frozenset, int] = {}  # keys -> line number, of the rows kept at the restored step

  def resume(self, step: int | None) -> int:
    """Call once, before the first `write`, with the step the run restored (None: it starts afresh). Moves
    the rows past `step` (all rows when None) to metrics.dropped.jsonl and drops a last line a kill cut
    short; returns how many rows left metrics.jsonl."""
    if not self.enabled:
      return 0
    self._restored_step = None if step is None else int(step)
    self._purge_step = 0 if step is None else int(step) + 1
    rows, torn = _read_rows(self.metrics_path)
    kept = [r for r in rows if step is not None and r["step"] <= step]
    gone = [r for r in rows if step is None or r["step"] > step]
    dropped = len(gone) + torn
    if dropped:
      # kept aside, not lost: rr never deletes what a run wrote
      files.append(self.dropped_path, "".join(json.dumps(r) + "\n" for r in gone))
      self._rewrite(kept)
      since = "no checkpoint was restored" if step is None else f"they are past the restored step {step}"
      print(f"rr: moved {dropped} row(s) of {self.metrics_path} to {os.path.basename(self.dropped_path)}: "
            f"{since}, and this run logs those steps again", file=sys.stderr)
    self._replaceable = {_keys(r): i for i, r in enumerate(kept) if r["step"] == step}
    return dropped

  def write(self, step: int, metrics: dict[str, Any]) -> None:
    if not self.enabled:
      return
    row = {"step": int(step), **{k: _plain(v) for k, v in metrics.items()}}
    line = self._replaceable.pop(_keys(row), None) if row["step"] == self._restored_step else None
    if line is None:
      files.append(self.metrics_path, json.dumps(row) + "\n")
    else:
      rows = read_metrics(self.metrics_path)
      files.append(self.dropped_path, json.dumps(rows[line]) + "\n")
      rows[line] = row
      self._rewrite(rows)
    tb = self._tensorboard()
    for key, value in row.items():
      if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
        tb.add_scalar(key, value, global_step=int(step))
    tb.flush()

  def write_summary(self, summary: dict[str, Any]) -> None:
    if not self.enabled:
      return
    summary = {k: _plain(v) for k, v in summary.items()}
    files.write_atomic(os.path.join(self.workdir, "summary.json"), json.dumps(summary, indent=2, sort_keys=True))

  def rows(self) -> list[dict]:
    return read_metrics(self.metrics_path)

  def plot_curves(self, keys: tuple[str, ...] = ("train/loss", "eval/accuracy", "eval/step_accuracy")) -> str:
    """Draws each metric against steps in one figure per key, side by side; returns the PNG path."""
    path = os.path.join(self.workdir, "curves.png")
    if not self.enabled:
      return path
    from matplotlib.figure import Figure  # not pyplot: a notebook's own backend and figures stay as they were

    rows = self.rows()
    present = [k for k in keys if any(k in r for r in rows)]
    fig = Figure(figsize=(4.5 * max(len(present), 1), 3.4))
    axes = fig.subplots(1, max(len(present), 1), squeeze=False)
    for ax, key in zip(axes[0], present):
      points = sorted((r["step"], r[key]) for r in rows if key in r)
      ax.plot([p[0] for p in points], [p[1] for p in points], marker="." if len(points) < 30 else None)
      ax.set_xlabel("step")
      ax.set_title(key)
      ax.grid(alpha=0.3)
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100)
    files.write_atomic(path, png.getvalue())
    return path

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()

  def _tensorboard(self):
    if self._tb is None:
      from tensorboardX import SummaryWriter, record_writer
      if files.is_uri(self.workdir):  # through rr.files, whatever the store: no client of tensorboardX's own
        record_writer.register_writer_factory(self.workdir.split(":")[0], _WholeEventFiles())
      self._tb = SummaryWriter(os.path.join(self.workdir, "tensorboard"), purge_step=self._purge_step)
    return self._tb

  def _rewrite(self, rows: list[dict]) -> None:
    """Replaces metrics.jsonl by `rows` atomically: a crash leaves the old file or the new, never half."""
    files.write_atomic(self.metrics_path, "".join(json.dumps(r) + "\n" for r in rows))


class _WholeEventFiles:
  """tensorboardX's writers for a workdir on an object store: each event file is kept in memory and uploaded
  whole at every flush (what tensorboardX's own gs:// writer does), so it needs nothing beyond rr.files."""

  directory_check = staticmethod(files.makedirs)

  class _EventFile:
    def __init__(self, path: str):
      self.path, self.buffer = path, io.BytesIO()

    def write(self, data: bytes) -> None:
      self.buffer.write(data)

    def flush(self) -> None:
      files.write_atomic(self.path, self.buffer.getvalue())

    def close(self) -> None:
      self.flush()

  def open(self, path: str) -> _EventFile:
    return self._EventFile(path)


def read_metrics(path: str) -> list[dict]:
  """The rows of a metrics.jsonl; a last line cut short by a kill is left out (see `MetricWriter.resume`)."""
  return _read_rows(path)[0]


def _read_rows(path: str) -> tuple[list[dict], int]:
  """(rows, 1 if the last line is a torn write else 0). Only the last line may be torn: a bad line before
  it is not rr's and stays an error."""
  if not files.exists(path):
    return [], 0
  lines = [line for line in io.StringIO(files.read_text(path)) if line.strip()]
  rows = [json.loads(line) for line in lines[:-1]]
  if lines:
    try:
      rows.append(json.loads(lines[-1]))
    except ValueError:
      if lines[-1].endswith("\n"):
        raise
      return rows, 1
  return rows, 0


def _keys(row: dict) -> frozenset:
  return frozenset(row)


def _plain(value: Any) -> Any:
  """numpy / jax scalars to Python numbers so json can write them."""
  if hasattr(value, "item") and getattr(value, "size", 1) == 1:
    return value.item()
  return value
