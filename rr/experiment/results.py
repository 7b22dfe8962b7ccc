"""What an experiment writes next to its runs: results.md, results.json and one plot per curve key.

  results.md    a table with a row per method: each column's mean ± sample std (ddof 1) over the method's
                finished seeds, and a `seeds` column saying how many finished (and what the others are: stale,
                unfinished, not started), so a method that has not finished is shown, never dropped; a cell
                over fewer seeds than that (a column without a value for a seed) says its n. Then each run's
                values with its status, trainer wall time and evaluation time, the shared runs, and the totals.
  results.json  the same numbers (NaN written as null)
  <key>.png     `key` against step for every run, one colour per method, one thin line per seed and the seeds'
                mean (at the steps every seed logged) thicker

Wall times are the trainers' own `wall_seconds` (summary.json; a run resumed after a stop counts the part that
finished it) and rr.eval's `seconds`; the experiment's total is their sum.
"""

from __future__ import annotations

import json
import math
import os
import re

import numpy as np

from rr.experiment import WALL_SECONDS, ExperimentError, current_evaluation, curve, run_status
from rr.files import write_atomic


def collect(experiment, shared, runs) -> dict:
  """Every number results.md and results.json show, read from the runs' directories."""
  titles = [c.title for c in experiment.columns]
  shared_rows = [_run_row(item, ()) for item in shared]
  order = {m.name: i for i, m in enumerate(experiment.methods)}  # rows by method, then seed (runs go seed-major)
  run_rows = [_run_row(item, experiment.columns) for item in sorted(runs, key=lambda r: order[r.method.name])]
  methods = []
  for method in experiment.methods:
    mine = [r for r in run_rows if r["method"] == method.name]
    finished = [r for r in mine if r["status"] == "finished"]
    stats = {}
    for title in titles:
      values = np.array([r["values"][title] for r in finished if r["values"].get(title) is not None], np.float64)
      stats[title] = {"mean": float(values.mean()) if values.size else None,
                      "std": float(values.std(ddof=1)) if values.size > 1 else None, "n": int(values.size)}
    methods.append({"name": method.name, "label": method.label or method.name, "description": method.description,
                    "finished": len(finished), "seeds": len(mine),
                    "statuses": {str(r["seed"]): r["status"] for r in mine}, "columns": stats})
  seconds = {"method_runs": _total(r["wall_seconds"] for r in run_rows),
             "shared_runs": _total(r["wall_seconds"] for r in shared_rows),
             "evaluations": _total(r["eval_seconds"] for r in run_rows)}
  seconds["total"] = sum(seconds.values())
  return {"experiment": experiment.name, "seeds": sorted({r["seed"] for r in run_rows}), "columns": titles,
          "methods": methods, "runs": run_rows, "shared": shared_rows, "wall_seconds": seconds}


def _run_row(item, columns) -> dict:
  state, summary = run_status(item)
  values = {c.title: _value(c, summary, item) for c in columns} if state == "finished" else {}
  evaluation = current_evaluation(item.directory) if item.method is not None else None
  return {"name": item.name, "method": item.method.name if item.method else None, "seed": item.seed,
          "directory": item.directory, "status": state, "values": values,
          "wall_seconds": _finite((summary or {}).get("wall_seconds")),
          "eval_seconds": _finite((evaluation or {}).get("seconds"))}


def _value(column, summary: dict, item) -> float | None:
  value = column.value(summary, item.directory)
  if value is None:
    return None
  if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
    raise ExperimentError(f"column {column.title!r} gave {value!r} for run {item.name}; a column's value is a number "
                          "or None")
  return float(value)


def _finite(value) -> float | None:
  return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _total(values) -> float:
  return float(sum(v for v in values if v is not None))


# ------------------------------------------------------------------------------------------ files


def write(experiment, directory: str, shared, runs) -> list[str]:
  """Writes results.md, results.json and the plots into `directory`; returns the names written."""
  results = collect(experiment, shared, runs)
  plots = [name for name in (plot(experiment, directory, runs, key) for key in experiment.curves) if name]
  write_atomic(os.path.join(directory, "results.json"), json.dumps(_plain(results), indent=2, allow_nan=False) + "\n")
  write_atomic(os.path.join(directory, "results.md"), markdown(experiment, results, plots))
  return ["results.md", "results.json", *plots]


def markdown(experiment, results: dict, plots: list[str] = ()) -> str:
  digits = {c.title: c.digits for c in experiment.columns}
  per_run = [c.title for c in experiment.columns if c is not WALL_SECONDS]  # the `train (s)` column shows it
  seeds = ", ".join(map(str, results["seeds"]))
  lines = [f"# {results['experiment']}", "",
           f"Seeds {seeds}. Each cell is the mean ± sample standard deviation over the method's finished seeds "
           "(`seeds`: how many finished).", "", main_table(results, digits), ""]
  described = [f"- **{m['label']}**: {m['description']}" for m in results["methods"] if m["description"]]
  lines += [*described, ""] if described else []
  timings = {"train (s)": "wall_seconds"}  # header -> row key
  if experiment.pass_at_k is not None:
    timings["eval (s)"] = "eval_seconds"
  lines += ["## Each run", "", "| method | seed | status | " + " | ".join([*per_run, *timings]) + " |",
            "|---|---:|---|" + "---:|" * (len(per_run) + len(timings))]
  labels = {m["name"]: m["label"] for m in results["methods"]}
  for r in results["runs"]:
    cells = [_number(r["values"].get(t), digits[t]) for t in per_run] + [_number(r[k], 0) for k in timings.values()]
    lines.append(f"| {labels[r['method']]} | {r['seed']} | {r['status']} | " + " | ".join(cells) + " |")
  if results["shared"]:
    lines += ["", "## Shared runs", "", "| run | status | train (s) |", "|---|---|---:|"]
    lines += [f"| {r['name']} | {r['status']} | {_number(r['wall_seconds'], 0)} |" for r in results["shared"]]
  seconds = results["wall_seconds"]
  parts = [f"{_duration(seconds['method_runs'])} of method runs", f"{_duration(seconds['shared_runs'])} of shared runs"]
  if experiment.pass_at_k is not None or seconds["evaluations"]:
    parts.append(f"{_duration(seconds['evaluations'])} of pass@k evaluations")
  lines += ["", f"Wall time: {', '.join(parts)}; **{_duration(seconds['total'])}** in all (each trainer's "
            "`wall_seconds`: a run resumed after a stop counts the part that finished it)."]
  lines += ["", *(f"![{name}]({name})" for name in plots)] if plots else []
  return "\n".join(lines) + "\n"


def main_table(results: dict, digits: dict) -> str:
  """The row-per-method table, also printed by the command line for pasting."""
  titles = results["columns"]
  lines = ["| method | seeds | " + " | ".join(titles) + " |", "|---|---:|" + "---:|" * len(titles)]
  for m in results["methods"]:
    others = [f"seed {seed} {state}" for seed, state in m["statuses"].items() if state != "finished"]
    seeds = f"{m['finished']}/{m['seeds']}" + (f" ({', '.join(others)})" if others else "")
    cells = [_cell(m["columns"][t], digits[t], m["finished"]) for t in titles]
    lines.append(f"| {m['label']} | {seeds} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def _cell(stats: dict, digits: int, finished: int) -> str:
  if not stats["n"]:
    return "–"
  text = f"{stats['mean']:.{digits}f}"
  if stats["std"] is not None:
    text += f" ± {stats['std']:.{digits}f}"
  return text + (f" (n={stats['n']})" if stats["n"] != finished else "")


def _number(value, digits: int) -> str:
  return "–" if value is None else f"{value:.{digits}f}"


def _duration(seconds: float) -> str:
  minutes, secs = divmod(int(round(seconds)), 60)
  hours, minutes = divmod(minutes, 60)
  return f"{hours} h {minutes} min {secs} s" if hours else f"{minutes} min {secs} s" if minutes else f"{secs} s"


def plot(experiment, directory: str, runs, key: str) -> str | None:
  """`key` against step for every run into DIR/<key>.png; returns the file's name, None when no run logged it."""
  curves = [(item, curve(item.directory, key)) for item in runs]
  if not any(points for _, points in curves):
    return None
  fig, ax = new_plot()
  for number, method in enumerate(experiment.methods):
    mine = [points for item, points in curves if item.method.name == method.name and points]
    colour = f"C{number % 10}"
    for points in mine:
      ax.plot([p[0] for p in points], [p[1] for p in points], color=colour, linewidth=0.8, alpha=0.45)
    common = sorted(set.intersection(*(set(dict(points)) for points in mine))) if mine else []
    if common:
      mean = [np.mean([dict(points)[step] for points in mine]) for step in common]
      ax.plot(common, mean, color=colour, linewidth=2.2)
    if mine:  # the legend names each method once, with its seed count
      ax.plot([], [], color=colour, linewidth=2.2, label=f"{method.label or method.name} ({len(mine)} seeds)")
  name = re.sub(r"[^A-Za-z0-9_.-]+", "_", key) + ".png"
  save_plot(fig, ax, os.path.join(directory, name), "step", key, f"{key}: each seed thin, their mean thick")
  return name


def new_plot(figsize=(6.4, 4.0)):
  """(figure, axes) drawn without pyplot, so a notebook's backend and its own figures stay as they were."""
  from matplotlib.figure import Figure

  fig = Figure(figsize=figsize)
  return fig, fig.subplots()


def save_plot(fig, ax, path: str, xlabel: str, ylabel: str, title: str, legend_size: int = 8, dpi: int = 100) -> str:
  """Labels, a grid and the legend on `ax`, then `fig` written to `path` atomically (a reader never sees half a
  PNG): the last lines every experiment plot shares. Returns `path`."""
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.set_title(title)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=legend_size)
  fig.tight_layout()
  tmp = os.path.join(os.path.dirname(path) or ".", f".{os.path.basename(path)}.tmp.{os.getpid()}")
  fig.savefig(tmp, dpi=dpi, format="png")
  os.replace(tmp, path)
  return path


def _plain(value):
  """JSON-safe: NaN and infinities to None."""
  if isinstance(value, dict):
    return {k: _plain(v) for k, v in value.items()}
  if isinstance(value, list):
    return [_plain(v) for v in value]
  if isinstance(value, float) and not math.isfinite(value):
    return None
  return value
