"""Distil, then reinforce (`config.trainer = "distil_then_reinforce"`): the rr story in one job.

Stage 1 is SFT on a small share of teacher rationales (`data.sft_size` of the train split); stage 2 is
GRPO from that checkpoint on the whole train split's questions (`rl.steps` at `rl.lr`), where only the
answers are needed. Each stage keeps its own workdir (`sft/`, `grpo/`) with its usual reports; the job's
summary.json has `eval/accuracy_initial` (after SFT, before RL) and `eval/accuracy` (after RL).
Rerunning the command resumes whichever stage was interrupted. The job's resolved config is written to
`config.json` in its workdir and each stage's (with the keys this module rewrites) to the stage's own, which
is what `rr.eval --checkpoint WORKDIR/grpo` reads when no --config is given.
"""

from __future__ import annotations

import os
from typing import Callable

import jax

from rr.config import save_run_config
from rr.train import grpo, sft
from rr.train.metrics import MetricWriter


def stage_configs(config):
  """(SFT config, GRPO config) derived from the job's config."""
  sft_config = config.copy_and_resolve_references()
  sft_config.trainer = "sft"
  if config.data.sft_size:
    sft_config.data.train_size = min(config.data.sft_size, config.data.train_size)
  rl_config = config.copy_and_resolve_references()
  rl_config.trainer = "grpo"
  rl_config.train.steps = config.rl.steps
  rl_config.optim.lr = config.rl.lr
  rl_config.optim.warmup_steps = min(config.optim.warmup_steps, max(config.rl.steps // 10, 1))
  rl_config.optim.weight_decay = 0.0
  return sft_config, rl_config


def run(config, workdir: str, should_stop: Callable[[int], bool] | None = None) -> dict:
  grpo.reward_config(config.rl)  # a bad reward setting stops the job before SFT, not minutes into it
  sft_config, rl_config = stage_configs(config)
  sft_dir, rl_dir = os.path.join(workdir, "sft"), os.path.join(workdir, "grpo")
  if jax.process_index() == 0:  # the job's config; each stage writes its own into its directory
    save_run_config(config, workdir)
  sft_summary = sft.run(sft_config, sft_dir, should_stop=should_stop)
  summary = {f"sft/{k}": v for k, v in sft_summary.items()}
  if sft_summary["finished"]:
    rl_config.init_checkpoint = sft_dir
    rl_summary = grpo.run(rl_config, rl_dir, should_stop=should_stop)
    summary.update({f"grpo/{k}": v for k, v in rl_summary.items()})
    summary.update({"finished": rl_summary["finished"], "eval/accuracy_initial": sft_summary.get("eval/accuracy"),
                    "eval/accuracy": rl_summary.get("eval/accuracy"),
                    "eval/step_accuracy": rl_summary.get("eval/step_accuracy")})
  else:
    summary["finished"] = False
  summary["wall_seconds"] = summary.get("sft/wall_seconds", 0.0) + summary.get("grpo/wall_seconds", 0.0)
  writer = MetricWriter(workdir, enabled=jax.process_index() == 0)
  writer.write_summary(summary)
  writer.close()
  return summary
