"""What a run leaves in its workdir: metrics.jsonl, TensorBoard events, summary.json and curves.png.

One writer serves every trainer. metrics.jsonl is appended to, so a resumed run continues the same file;
each line is one logged step: `{"step": N, "train/loss": ..., "eval/accuracy": ...}`.

The file never holds two rows for one (step, keys). A run that died without saving (SIGKILL, power loss)
logged steps its last checkpoint does not hold; the rerun restores that checkpoint and logs those steps
again, so `resume(step)` first moves every row past the restored step to metrics.dropped.jsonl (rewriting
metrics.jsonl atomically) and TensorBoard hides its events from there on (`purge_step`). A row logged again
at the restored step itself (a finished run rerun evaluates once more) replaces the earlier one, which goes
to metrics.dropped.jsonl too.
"""

from __future__ import annotations

import json
import math
import os
import sys
from typing import Any

from rr.files import write_atomic


class MetricWriter:

  def __init__(self, workdir: str, enabled: bool = True):
    """`enabled=False` on every process but the first of a multi-process job: one process writes."""
    self.workdir = workdir
    self.enabled = enabled
    os.makedirs(workdir, exist_ok=True)
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
      with open(self.dropped_path, "a") as f:  # kept aside, not lost: rr never deletes what a run wrote
        f.writelines(json.dumps(r) + "\n" for r in gone)
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
      with open(self.metrics_path, "a") as f:
        f.write(json.dumps(row) + "\n")
    else:
      rows = read_metrics(self.metrics_path)
      with open(self.dropped_path, "a") as f:
        f.write(json.dumps(rows[line]) + "\n")
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
    path = os.path.join(self.workdir, "summary.json")
    with open(path, "w") as f:
      json.dump({k: _plain(v) for k, v in summary.items()}, f, indent=2, sort_keys=True)

  def rows(self) -> list[dict]:
    return read_metrics(self.metrics_path)

  def plot_curves(self, keys: tuple[str, ...] = ("train/loss", "eval/accuracy", "eval/step_accuracy")) -> str:
    """Draws each metric against steps in one figure per key, side by side; returns the PNG path."""
    path = os.path.join(self.workdir, "curves.png")
    if not self.enabled:
      return path
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = self.rows()
    present = [k for k in keys if any(k in r for r in rows)]
    fig, axes = plt.subplots(1, max(len(present), 1), figsize=(4.5 * max(len(present), 1), 3.4), squeeze=False)
    for ax, key in zip(axes[0], present):
      points = sorted((r["step"], r[key]) for r in rows if key in r)
      ax.plot([p[0] for p in points], [p[1] for p in points], marker="." if len(points) < 30 else None)
      ax.set_xlabel("step")
      ax.set_title(key)
      ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()

  def _tensorboard(self):
    if self._tb is None:
      from tensorboardX import SummaryWriter
      self._tb = SummaryWriter(os.path.join(self.workdir, "tensorboard"), purge_step=self._purge_step)
    return self._tb

  def _rewrite(self, rows: list[dict]) -> None:
    """Replaces metrics.jsonl by `rows` atomically: a crash leaves the old file or the new, never half."""
    write_atomic(self.metrics_path, "".join(json.dumps(r) + "\n" for r in rows))


def read_metrics(path: str) -> list[dict]:
  """The rows of a metrics.jsonl; a last line cut short by a kill is left out (see `MetricWriter.resume`)."""
  return _read_rows(path)[0]


def _read_rows(path: str) -> tuple[list[dict], int]:
  """(rows, 1 if the last line is a torn write else 0). Only the last line may be torn: a bad line before
  it is not rr's and stays an error."""
  if not os.path.exists(path):
    return [], 0
  with open(path) as f:
    lines = [line for line in f if line.strip()]
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
