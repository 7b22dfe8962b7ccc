"""The one train loop every trainer runs: evaluate, train with periodic logs, evaluations and checkpoints, then
evaluate and write the reports.

A trainer (rr.train.sft, rr.train.grpo) builds its parts and hands the loop a `Trainer`: `step(state, n)`
advances loop step n -> n + 1 and returns device metrics (not yet fetched) and host metrics. The loop keeps at
most two steps in flight: it fetches step n's device metrics after dispatching step n + 1, so the device never
waits for the host's logging, and a non-finite step (whose update the step skipped) is seen one step late. Rows
of a logging window are averaged (TRL's convention). Checkpoints are named by loop step and also carry the
trainer's data state (a prompt source's, say), so a resumed run continues exactly.

In a job of several processes every process runs this loop with the same steps: they save each checkpoint
together (rr.checkpoint), a Ctrl-C or SIGTERM on any one of them stops all after the same step
(rr.train.interrupt.StopRequest.agreed), and only process 0 writes metrics, the summary and curves.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import Any, Callable

import jax
import numpy as np
from tqdm import tqdm

from rr.train.interrupt import StopRequest
from rr.train.metrics import MetricWriter
from rr.train.setup import count_params
from rr.train.state import policy_params

NOT_LOGGED = ("finite", "finite_terms")  # device metrics the loop reads itself


@dataclasses.dataclass
class StepOutput:
  state: dict
  device: dict  # the jitted step's metrics, still on the device
  host: dict = dataclasses.field(default_factory=dict)  # "train/..." scalars the host already has
  notes: list = dataclasses.field(default_factory=list)  # lines for the progress bar (a reward that failed)


@dataclasses.dataclass
class Trainer:
  name: str  # the progress bar's label
  total_steps: int
  step: Callable[[dict, int], StepOutput]
  evaluate: Callable[[Any], dict]  # params -> "eval/..." metrics ({} without held-out examples)
  learning_rate: Callable[[int], float]  # the learning rate of the last update of loop step n (read at logs)
  data_state: Callable[[], dict] = dict  # JSON state saved with each checkpoint's record
  evaluate_first: bool = False  # evaluate the starting params as eval/accuracy_initial (RL from a checkpoint)
  done: Callable[[], bool] = lambda: False  # a budget is spent (rl.max_sampled_tokens): finish before total_steps
  totals: Callable[[], dict] = dict  # "total/..." run counts for the summary (sampled tokens, say)
  curves: tuple = ("train/loss", "eval/accuracy", "eval/step_accuracy")


HOST_COUNTS = ("tokens_read", "num_tokens")  # per-step counts the loop turns into rates and totals, never averaged


def mean_rows(rows: list[dict], seconds: float) -> dict:
  """The mean of each key over a logging window, plus the wall time per step and, from the host metric
  `tokens_read` (tokens a step read or sampled), the tokens per second."""
  keys = sorted({k for r in rows for k in r} - set(HOST_COUNTS))
  out = {k: float(np.mean([r[k] for r in rows if k in r])) for k in keys}
  out["train/seconds_per_step"] = seconds / max(len(rows), 1)
  if any("tokens_read" in r for r in rows):
    out["train/tokens_per_s"] = sum(r.get("tokens_read", 0.0) for r in rows) / max(seconds, 1e-9)
  return out


def logged_row(window: list[dict], seconds: float, learning_rate: float) -> dict:
  """A logging window's row: the means, the learning rate of its last update, and the running num_tokens at its
  last step (a total, not a mean)."""
  return {**mean_rows(window, seconds), "train/learning_rate": learning_rate,
          "train/num_tokens": window[-1]["train/num_tokens"]}


def _fetch(output: StepOutput) -> tuple[dict, list[str]]:
  """(the step's "train/..." row, the names of its non-finite terms)."""
  device = jax.device_get(output.device)
  bad = [k for k, v in device["finite_terms"].items() if not v] if not device["finite"] else []
  row = {f"train/{k}": float(v) for k, v in device.items() if k not in NOT_LOGGED and np.ndim(v) == 0}
  return {**row, **output.host}, bad


def step_tokens(row: dict) -> float:
  """The tokens a step trained on, TRL's `num_tokens` unit (prompt and completion, padding excluded): the host
  metric `num_tokens` where a trainer reads more than it trains on (GRPO samples; tokens_read counts those)."""
  return float(row.get("num_tokens", row.get("tokens_read", 0.0)))


def run_loop(trainer: Trainer, state: dict, workdir: str, config, checkpoints, record: dict,
             resumed: int | None, start: float, should_stop: Callable[[int], bool] | None = None) -> dict:
  """Trains from `state` (at loop step `resumed`, or 0) to `trainer.total_steps`; returns the run's summary."""
  writer = MetricWriter(workdir, enabled=jax.process_index() == 0)
  step = 0 if resumed is None else resumed
  writer.resume(resumed)  # rows a crash logged past the checkpoint: set aside
  # TRL's num_tokens: every token trained on so far, kept in each checkpoint's record so a resume continues it
  num_tokens = 0.0 if resumed is None else float(checkpoints.read_record(resumed).get("num_tokens", 0.0))
  first_eval, last_train, last_eval, interrupted, failed = {}, {}, {}, False, False
  if resumed is None and trainer.evaluate_first:
    first_eval = trainer.evaluate(policy_params(state))
    if first_eval:
      first_eval["eval/accuracy_initial"] = first_eval["eval/accuracy"]
      writer.write(step, first_eval)

  def save():
    checkpoints.save(step, state, {**record, "data_state": trainer.data_state(), "num_tokens": num_tokens})

  try:
    window, pending, window_start = [], None, time.time()
    with StopRequest() as stop, tqdm(total=trainer.total_steps, initial=step, desc=trainer.name, dynamic_ncols=True,
                                     file=sys.stderr, mininterval=2.0) as bar:

      def flush() -> list[str]:  # fetch the step in flight; returns its non-finite terms
        nonlocal pending, num_tokens
        if pending is None:
          return []
        row, bad = _fetch(pending)
        pending = None
        num_tokens += step_tokens(row)
        window.append({**row, "train/num_tokens": num_tokens})
        return bad

      while step < trainer.total_steps and not trainer.done():
        out = trainer.step(state, step)
        state = out.state
        step += 1
        bar.update(1)
        for note in out.notes:
          bar.write(note)
        bad = flush()  # the step before this one, done by now or nearly
        pending = out
        last = step == trainer.total_steps or trainer.done()
        log = step % config.train.log_every == 0 or last
        evaluate = bool(config.train.eval_every) and step % config.train.eval_every == 0 and not last
        checkpoint = step % config.train.checkpoint_every == 0
        if log or evaluate or checkpoint:
          bad = bad or flush()
        if bad:  # the step skipped that update (rr.train.step), so the state is still a good one
          bar.write(f"rr: non-finite {', '.join(bad)} before step {step}; those updates were skipped and the run "
                    f"stops with a good checkpoint in {checkpoints.directory}")
          interrupted = failed = True
          break
        if log and window:
          last_train = logged_row(window, time.time() - window_start, trainer.learning_rate(step))
          writer.write(step, last_train)
          bar.set_postfix({k.split("/")[-1]: f"{last_train[k]:.4g}" for k in ("train/reward", "train/loss")
                           if k in last_train})
          window, window_start = [], time.time()
        if evaluate:
          last_eval = trainer.evaluate(policy_params(state))
          writer.write(step, last_eval)
          bar.write(f"step {step}: " + ", ".join(f"{k}={v:.4g}" for k, v in last_eval.items()))
          window_start = time.time()
        if checkpoint:
          save()
        stop_now = stop.agreed()  # every step, on every process: all of them stop after the same step
        if stop_now or (should_stop is not None and should_stop(step)):
          interrupted = step < trainer.total_steps and not trainer.done()
          break
      bad = flush()  # the last step in flight
      if bad and not failed:
        bar.write(f"rr: non-finite {', '.join(bad)} at step {step}; that update was skipped, and the run stops with a "
                  f"good checkpoint in {checkpoints.directory}")
        interrupted = failed = True
  except BaseException:  # a crash or Ctrl-C outside the handler: let a checkpoint in flight finish
    checkpoints.wait()
    raise
  if window and not failed:  # stopped between two logged steps
    last_train = logged_row(window, time.time() - window_start, trainer.learning_rate(step))
  # ---------------------------------------------------------------- final evaluation and reports
  save()
  checkpoints.close()
  if interrupted:
    print(f"rr: stopped at step {step}; checkpoint saved in {checkpoints.directory}. "
          "Run the same command again to resume.", file=sys.stderr)
  else:
    last_eval = trainer.evaluate(policy_params(state))
    if last_eval:
      writer.write(step, last_eval)
  summary = {"step": step, "finished": not interrupted, "failed": failed, "wall_seconds": time.time() - start,
             "num_params": count_params(state["params"]), **last_train, **last_eval, **trainer.totals()}
  if "eval/accuracy_initial" in first_eval:
    summary["eval/accuracy_initial"] = first_eval["eval/accuracy_initial"]
  writer.write_summary(summary)
  writer.plot_curves(trainer.curves)
  writer.close()
  if not interrupted:
    print("rr: " + ", ".join(f"{k}={v:.4g}" for k, v in summary.items() if isinstance(v, float)), file=sys.stderr)
  return summary
