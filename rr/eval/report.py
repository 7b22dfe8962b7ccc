"""What `python -m rr.eval` writes into its --out directory.

  eval.json          every metric (NaN written as null), plus the checkpoint path and step;
                     confidence_coverage = {stated, total, coverage, stated_right, right, stated_wrong, wrong};
                     by_difficulty = {level: {count, accuracy, pass@k, maj@k, and for generated tasks
                     step_accuracy and cot_pass@k}}
  report.md          a Markdown report: headline metrics, pass@k / maj@k / cot_pass@k per k, accuracy, step
                     accuracy and pass@k by difficulty, the chosen-against-gold matrix for multiple-choice data,
                     length statistics, calibration (ECE and Brier with their coverage: how many completions state a
                     confidence, of all, and among right and wrong answers)
  completions.jsonl  one row per completion: question, kind (greedy or sample j), text, answer, verdicts
  pass_at_k.png      pass@k, maj@k and cot_pass@k against k (log2 axis)
  reliability.png    accuracy against stated confidence per bin (only when confidences exist)
  lengths.png        histogram of completion lengths, greedy and sampled

Files are created exclusively: an existing one is never overwritten (rr.eval.run.check_out_dir refuses such
an --out before any work; rr.files.write_new keeps that true even if another process raced us). --out may be
an object store's URI (rr.files).
"""

from __future__ import annotations

import io
import json
import math
import os
from typing import Any, Sequence

from rr import files


def _plain(value: Any) -> Any:
  """JSON-safe: numpy scalars to Python, NaN/inf to None."""
  if isinstance(value, dict):
    return {str(k): _plain(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_plain(v) for v in value]
  if hasattr(value, "item") and not isinstance(value, (str, bytes)):
    value = value.item()
  if isinstance(value, float) and not math.isfinite(value):
    return None
  return value


def write_all(out: str, results: dict, examples, greedy, sampled) -> dict[str, str]:
  """Writes every output file into `out` (created if needed); returns {name: path}. In a job of several
  processes only process 0 writes (the others return {}): every one holds the same results."""
  import jax

  if jax.process_index() != 0:
    return {}
  files.makedirs(out, what="--out")
  paths = {"eval.json": write_json(os.path.join(out, "eval.json"), results)}
  paths["completions.jsonl"] = write_completions(os.path.join(out, "completions.jsonl"), examples, greedy, sampled)
  lengths = {"greedy": [s.length for s in greedy], "sampled": [s.length for row in sampled for s in row]}
  paths.update(write_plots(out, results, lengths))
  paths["report.md"] = write_markdown(os.path.join(out, "report.md"), results, plots=paths)
  return paths


def write_json(path: str, results: dict) -> str:
  files.write_new(path, json.dumps(_plain(results), indent=2, sort_keys=False) + "\n")
  return path


def write_completions(path: str, examples, greedy, sampled) -> str:
  lines = []
  for q, example in enumerate(examples):
    rows = [("greedy", greedy[q])] + [(f"sample {j}", s) for j, s in enumerate(sampled[q])]
    for kind, s in rows:
      lines.append(json.dumps(_plain({"question_index": q, "question": example.question, "target": example.answer,
                                      "difficulty": example.difficulty, "kind": kind, "text": s.text,
                                      "answer": s.answer, "correct": s.correct, "steps_ok": s.steps_ok,
                                      "confidence": s.confidence, "length": s.length})) + "\n")
  files.write_new(path, "".join(lines))
  return path


def _fmt(value: Any) -> str:
  if value is None or (isinstance(value, float) and not math.isfinite(value)):
    return "-"
  if isinstance(value, float):
    return f"{value:.3f}"
  return str(value)


def write_markdown(path: str, results: dict, plots: dict[str, str] | None = None) -> str:
  r, plots = results, plots or {}
  ks = r.get("ks", [])
  has_cot = any(f"cot_pass@{k}" in r for k in ks)
  lines = [f"# Evaluation of `{r.get('checkpoint', '?')}` step {r.get('step', '?')}", "",
           f"{r['num_examples']} held-out questions ({r.get('task', '')}), greedy decoding plus {r['num_samples']} "
           f"samples per question at temperature {_fmt(r.get('temperature'))}, up to {r.get('max_new_tokens', '?')} "
           "new tokens.", "", "| metric | value |", "|---|---:|",
           f"| accuracy (greedy) | {_fmt(r['accuracy'])} |"]
  if "step_accuracy" in r:
    lines.append(f"| step accuracy (greedy: answer and every step right) | {_fmt(r['step_accuracy'])} |")
  lines += [f"| unparsed (greedy completions without an answer) | {r['unparsed']} of {r['num_examples']} |",
            f"| unparsed (sampled completions) | {r['unparsed_sampled']} of {r['num_examples'] * r['num_samples']} |"]
  for k in ks:
    lines.append(f"| pass@{k} | {_fmt(r[f'pass@{k}'])} |")
  stated = _stated_text(r.get("confidence_coverage"))
  lines += [f"| ECE ({stated}) | {_fmt(r.get('ece'))} |", f"| Brier ({stated}) | {_fmt(r.get('brier'))} |",
            f"| confidence coverage (completions that state one) | "
            f"{_fmt(r.get('confidence_coverage', {}).get('coverage'))} |", ""]

  lines += ["## pass@k, maj@k, CoT-pass@k", "",
            "| k | pass@k | maj@k |" + (" cot_pass@k |" if has_cot else ""),
            "|---:|---:|---:|" + ("---:|" if has_cot else "")]
  for k in ks:
    row = f"| {k} | {_fmt(r[f'pass@{k}'])} | {_fmt(r[f'maj@{k}'])} |"
    lines.append(row + (f" {_fmt(r.get(f'cot_pass@{k}'))} |" if has_cot else ""))
  lines.append("")
  if "pass_at_k.png" in plots:
    lines += ["![pass@k](pass_at_k.png)", ""]

  lines += _difficulty_lines(r.get("by_difficulty", {}), ks)

  lines += _choice_lines(r.get("choice_confusion"))

  lines += ["## Completion length (tokens, eos included)", "", "| completions | mean | min | p50 | p90 | max |",
            "|---|---:|---:|---:|---:|---:|"]
  for name, key in (("greedy", "length"), ("sampled", "length_sampled")):
    s = r.get(key, {})
    lines.append(f"| {name} | " + " | ".join(_fmt(s.get(f)) for f in ("mean", "min", "p50", "p90", "max")) + " |")
  lines.append("")
  if "lengths.png" in plots:
    lines += ["![lengths](lengths.png)", ""]

  cal = r.get("calibration", {})
  lines += ["## Calibration", ""]
  coverage = r.get("confidence_coverage")
  if cal.get("count"):
    lines += [f"{_stated_text(coverage)} completions (greedy and sampled) state a confidence"
              f"{_split_text(coverage)}. ECE {_fmt(r['ece'])}, Brier {_fmt(r['brier'])}, over those only: a model "
              "that leaves the confidence out where it is wrong looks better calibrated than it is.", "",
              "| bin | completions | mean confidence | accuracy |", "|---|---:|---:|---:|"]
    for b in cal["bins"]:
      lines.append(f"| [{b['lo']:.2f}, {b['hi']:.2f}) | {b['count']} | {_fmt(b['confidence'])} | "
                   f"{_fmt(b['accuracy'])} |")
    lines.append("")
    if "reliability.png" in plots:
      lines += ["![reliability](reliability.png)", ""]
  else:
    lines += [f"No completion states a confidence ({_stated_text(coverage)}; `confidence: 0.8` as the answer's "
              "last line), so there is no ECE or Brier score.", ""]
  files.write_new(path, "\n".join(lines))
  return path


def _stated_text(coverage: dict | None) -> str:
  """"2 of 6": how many completions ECE and Brier are over, out of all."""
  if not coverage:
    return "? of ?"
  return f"{coverage['stated']} of {coverage['total']}"


def _split_text(coverage: dict | None) -> str:
  """"; 1 of 3 right answers, 1 of 3 wrong": where the stated confidences sit."""
  if not coverage:
    return ""
  return (f"; {coverage['stated_right']} of {coverage['right']} right answers, "
          f"{coverage['stated_wrong']} of {coverage['wrong']} wrong ones")


def _difficulty_lines(by_difficulty: dict, ks: Sequence[int]) -> list[str]:
  """The headline metrics of each difficulty level's questions: a mean over levels hides which ones moved."""
  has_steps = any("step_accuracy" in v for v in by_difficulty.values())
  columns = [("accuracy (greedy)", "accuracy"), *([("step accuracy", "step_accuracy")] if has_steps else []),
             *((f"pass@{k}", f"pass@{k}") for k in ks)]
  lines = ["## Accuracy by difficulty", "", "| difficulty | questions | " + " | ".join(c for c, _ in columns) + " |",
           "|---:|---:|" + "---:|" * len(columns)]
  for level, v in by_difficulty.items():
    lines.append(f"| {level} | {v['count']} | " + " | ".join(_fmt(v.get(key)) for _, key in columns) + " |")
  return lines + [""]


def _choice_lines(confusion: dict | None) -> list[str]:
  """Multiple-choice data: the greedy answers' confusion matrix, gold letters down, chosen letters across."""
  if not confusion:
    return []
  matrix = confusion["confusion"]
  columns = list(next(iter(matrix.values())).keys()) if matrix else []
  lines = ["## Multiple choice: chosen against gold (greedy)", "",
           f"Accuracy {_fmt(confusion['accuracy'])}. Rows are the gold letter, columns the letter the answer chose "
           "(\"unparsed\": none, or not one of the choices).", "",
           "| gold / chosen | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
  for gold, row in matrix.items():
    lines.append(f"| {gold} | " + " | ".join(str(row[c]) for c in columns) + " |")
  return lines + [""]


def write_plots(out: str, results: dict, lengths: dict[str, Sequence[int]]) -> dict[str, str]:
  """pass_at_k.png, lengths.png, and reliability.png when some completion stated a confidence."""
  from matplotlib.figure import Figure  # not pyplot: a notebook's own backend and figures stay as they were

  def subplots(figsize):
    fig = Figure(figsize=figsize)
    return fig, fig.subplots()

  paths = {}
  r, ks = results, results.get("ks", [])
  fig, ax = subplots(figsize=(5, 3.5))
  for name, label in (("pass", "pass@k"), ("maj", "maj@k"), ("cot_pass", "CoT-pass@k")):
    if all(f"{name}@{k}" in r for k in ks):
      ax.plot(ks, [r[f"{name}@{k}"] for k in ks], marker="o", label=label)
  ax.set_xscale("log", base=2)
  ax.set_xticks(ks, [str(k) for k in ks])
  ax.set_xlabel("k (samples)")
  ax.set_ylim(-0.02, 1.02)
  ax.set_title(f"n = {r['num_samples']} samples per question")
  ax.legend()
  ax.grid(alpha=0.3)
  paths["pass_at_k.png"] = _save(fig, os.path.join(out, "pass_at_k.png"))

  bins = [b for b in r.get("calibration", {}).get("bins", []) if b["count"]]
  if bins:
    fig, ax = subplots(figsize=(4, 4))
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    width = bins[0]["hi"] - bins[0]["lo"]
    ax.bar([b["lo"] for b in bins], [b["accuracy"] for b in bins], width=width, align="edge", alpha=0.7,
           edgecolor="k", label="accuracy")
    ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o", color="C3",
            label="mean confidence")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("stated confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"ECE {_fmt(r.get('ece'))}, Brier {_fmt(r.get('brier'))} "
                 f"({_stated_text(r.get('confidence_coverage'))} stated)", fontsize=9)
    ax.legend(loc="upper left", fontsize=8)
    paths["reliability.png"] = _save(fig, os.path.join(out, "reliability.png"))

  fig, ax = subplots(figsize=(5, 3.5))
  for name in ("greedy", "sampled"):
    values = list(lengths.get(name, []))
    if len(values):
      ax.hist(values, bins=min(30, max(1, len(set(values)))), alpha=0.6, label=name, density=True)
  ax.set_xlabel("completion length (tokens)")
  ax.set_ylabel("share of completions")
  ax.legend()
  paths["lengths.png"] = _save(fig, os.path.join(out, "lengths.png"))
  return paths


def _save(fig, path: str) -> str:
  fig.tight_layout()
  png = io.BytesIO()
  fig.savefig(png, format="png", dpi=100)
  files.write_new(path, png.getvalue())
  return path
