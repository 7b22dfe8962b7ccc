"""SFT on rationales: the loop that `config.trainer = "sft"` runs.

Reads top to bottom in phases: inputs, mesh, model and optimiser, checkpoint restore, train loop with
periodic evaluation and checkpoints, final evaluation and reports. Every check of user input happens in the
first phase, before anything is compiled or written.
"""

from __future__ import annotations

import sys
import time
from typing import Callable

import jax
import numpy as np
from tqdm import tqdm

from rr import models
from rr.config import save_run_config
from rr.data import SFTBatches
from rr.eval import evaluate_accuracy
from rr.sampler import Sampler
from rr.data.inputs import load_inputs
from rr.train.interrupt import StopRequest
from rr.train.metrics import MetricWriter
from rr.train.optimizer import learning_rate_schedule, make_optimizer
from rr.train.setup import build_mesh, build_model_config, count_params
from rr.train.state import open_run
from rr.train.step import make_sft_step, put_batch


def run(config, workdir: str, should_stop: Callable[[int], bool] | None = None) -> dict:
  """Trains, evaluates and writes reports into `workdir`; returns the summary.

  `should_stop(step)` lets a caller end the run after a step as Ctrl-C would (a checkpoint is saved).
  """
  start = time.time()
  # ---------------------------------------------------------------- inputs
  inputs = load_inputs(config)
  tokenizer = inputs.tokenizer
  batches = SFTBatches(inputs.train, tokenizer, config.train.batch_size, config.data.max_len, config.seed)
  eval_examples = inputs.test[:config.eval.num_examples]
  model_cfg = build_model_config(config, tokenizer.vocab_size)
  # ---------------------------------------------------------------- mesh
  mesh = build_mesh(config, config.train.batch_size)
  # ---------------------------------------------------------------- model and optimiser
  model = models.Decoder(model_cfg)
  total_steps = config.train.steps
  optimizer = make_optimizer(config.optim, total_steps, model_cfg.param_dtype)
  schedule = learning_rate_schedule(config.optim, total_steps)
  # ---------------------------------------------------------------- checkpoint restore
  checkpoints, record, state, shardings, resumed = open_run(workdir, config, model_cfg, optimizer, mesh,
                                                           tokenizer.vocab_size)
  if jax.process_index() == 0:
    save_run_config(config, workdir)
  # ---------------------------------------------------------------- train loop
  writer = MetricWriter(workdir, enabled=jax.process_index() == 0)
  sampler = Sampler(model_cfg, eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id, mesh=mesh)
  train_step = make_sft_step(model, optimizer, shardings, mesh)

  def evaluate(params) -> dict:
    if not eval_examples:
      return {}
    t = time.time()
    metrics = evaluate_accuracy(sampler, params, tokenizer, eval_examples,
                                max_new_tokens=config.eval.max_new_tokens, batch_size=config.eval.batch_size)
    return {**metrics, "eval/seconds": time.time() - t}

  step = int(jax.device_get(state["step"]))
  writer.resume(None if resumed is None else step)  # rows a crash logged past the checkpoint: set aside
  pending, window_tokens, window_start = [], 0, time.time()
  last_train, last_eval, interrupted = {}, {}, False
  with StopRequest() as stop, tqdm(total=total_steps, initial=step, desc="sft", dynamic_ncols=True,
                                   file=sys.stderr, mininterval=2.0) as bar:
    while step < total_steps:
      batch = batches.batch(step)
      state, metrics = train_step(state, put_batch(batch, mesh))
      step += 1
      pending.append(metrics)
      if len(pending) > 1:  # at most two steps in flight: an honest progress bar and a prompt stop
        pending[-2]["loss"].block_until_ready()
      window_tokens += int((batch["positions"] >= 0).sum())
      bar.update(1)
      if step % config.train.log_every == 0 or step == total_steps:
        window = jax.device_get(pending)
        bad = sorted({k for m in window for k, v in m["finite_terms"].items() if not v})
        if bad:  # the step skipped those updates (rr.train.step), so the state is still a good one
          bar.write(f"rr: non-finite {', '.join(bad)} before step {step}; those updates were skipped and the run "
                    f"stops with a good checkpoint in {checkpoints.directory}")
          interrupted = True
          break
        elapsed = time.time() - window_start
        last_train = {"train/loss": float(np.mean([m["loss"] for m in window])),
                      "train/grad_norm": float(np.mean([m["grad_norm"] for m in window])),
                      "train/lr": float(schedule(step - 1)),
                      "train/tokens_per_s": window_tokens / max(elapsed, 1e-9),
                      "train/seconds_per_step": elapsed / len(window)}
        writer.write(step, last_train)
        bar.set_postfix(loss=f"{last_train['train/loss']:.4f}")
        pending, window_tokens, window_start = [], 0, time.time()
      if config.train.eval_every and step % config.train.eval_every == 0 and step < total_steps:
        last_eval = evaluate(state["params"])
        writer.write(step, last_eval)
        bar.write(f"step {step}: " + ", ".join(f"{k}={v:.4g}" for k, v in last_eval.items()))
        window_start = time.time()
      if step % config.train.checkpoint_every == 0:
        checkpoints.save(step, state, record)
      if stop.requested or (should_stop is not None and should_stop(step)):
        interrupted = step < total_steps
        break
  # ---------------------------------------------------------------- final evaluation and reports
  checkpoints.save(step, state, record)
  checkpoints.close()
  if interrupted:
    print(f"rr: stopped at step {step}; checkpoint saved in {checkpoints.directory}. "
          "Run the same command again to resume.", file=sys.stderr)
  else:
    last_eval = evaluate(state["params"])
    if last_eval:
      writer.write(step, last_eval)
  summary = {"step": step, "finished": not interrupted, "wall_seconds": time.time() - start,
             "num_params": count_params(state["params"]), **last_train, **last_eval}
  writer.write_summary(summary)
  writer.plot_curves()
  writer.close()
  if not interrupted:
    print("rr: " + ", ".join(f"{k}={v:.4g}" for k, v in summary.items() if isinstance(v, float)), file=sys.stderr)
  return summary
