"""What a run leaves in its workdir: metrics.jsonl, TensorBoard events, summary.json and curves.png.

One writer serves every trainer. metrics.jsonl is appended to, so a resumed run continues the same file;
each line is one logged step: `{"step": N, "train/loss": ..., "eval/accuracy": ...}`.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any


class MetricWriter:

  def __init__(self, workdir: str, enabled: bool = True):
    """`enabled=False` on every process but the first of a multi-process job: one process writes."""
    self.workdir = workdir
    self.enabled = enabled
    os.makedirs(workdir, exist_ok=True)
    self.metrics_path = os.path.join(workdir, "metrics.jsonl")
    self._tb = None

  def write(self, step: int, metrics: dict[str, Any]) -> None:
    if not self.enabled:
      return
    row = {"step": int(step), **{k: _plain(v) for k, v in metrics.items()}}
    with open(self.metrics_path, "a") as f:
      f.write(json.dumps(row) + "\n")
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
      self._tb = SummaryWriter(os.path.join(self.workdir, "tensorboard"))
    return self._tb


def read_metrics(path: str) -> list[dict]:
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def _plain(value: Any) -> Any:
  """numpy / jax scalars to Python numbers so json can write them."""
  if hasattr(value, "item") and getattr(value, "size", 1) == 1:
    return value.item()
  return value
