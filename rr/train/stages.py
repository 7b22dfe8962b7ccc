"""A job of several trainers in order (`config.trainer = "stages"`), so SFT -> GRPO, sample teacher data ->
distil -> reinforce, or ReST-EM rounds are configs, not code.

`config.stages` names the stages in order; `config.stage.<name>` holds each one's `trainer` and its overrides of
the job's config (rr.config.stage_config applies them). Stage <name> runs in WORKDIR/<name>/ with its own reports
and config.json (what `rr.eval --checkpoint WORKDIR/<name>` reads); each stage after the first starts from the
one before (init_checkpoint = that stage's directory) unless its overrides set init_checkpoint ("" = fresh).
Any string value "stage:<name>" in a stage's config (init_checkpoint="stage:base", data.rationales_path=
"stage:sample_1") is the directory of the earlier stage <name>: ReST-EM fine-tunes each round from the base
stage on the round's teacher data. Every stage's trainer, reward and teach settings and its "stage:" references
are checked before the first stage trains.

Rerunning the command resumes. A stage whose summary.json says finished, and whose newest config.json is its
config now, is not run again: its summary is read back (a changed stage, e.g. more train.steps, runs and its
trainer resumes from its checkpoints). A stage that stops unfinished (Ctrl-C, SIGTERM, should_stop) stops the job.
The job's summary.json holds every stage's summary under `<name>/`, `finished`, `wall_seconds` (the stages' sum)
and the last stage's `eval/accuracy` and `eval/step_accuracy`, with `eval/accuracy_initial` = the stage before's
eval/accuracy (where the last stage started).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Callable, Sequence

import jax
import ml_collections

from rr import train
from rr.config import ConfigError, same_run_config, save_run_config, stage_config, stage_names
from rr.data.teacher_data import STAGE_PREFIX
from rr.train import TRAINERS, dpo, grpo, teach
from rr.train.metrics import MetricWriter


def stage_configs(config, workdir: str) -> list[tuple[str, ml_collections.ConfigDict]]:
  """(name, config) of each stage in order as it runs under `workdir`; the job's config is left as it was."""
  out = []
  for name in stage_names(config):
    stage = stage_config(config, name)
    if out and "init_checkpoint" not in config.stage[name]:
      stage.init_checkpoint = os.path.join(workdir, out[-1][0])
    _resolve_references(stage, [n for n, _ in out], workdir)
    out.append((name, stage))
  return out


def _resolve_references(group: ml_collections.ConfigDict, earlier: list[str], workdir: str) -> None:
  """Replaces each "stage:<name>" value of an earlier stage by its directory; others stay for check_stage."""
  for key, value in group.items():
    if isinstance(value, ml_collections.ConfigDict):
      _resolve_references(value, earlier, workdir)
    elif isinstance(value, str) and value.startswith(STAGE_PREFIX) and value[len(STAGE_PREFIX):] in earlier:
      group[key] = os.path.join(workdir, value[len(STAGE_PREFIX):])


def _references(group: ml_collections.ConfigDict, prefix: str = ""):
  """(dotted key, value) of every "stage:" string value left in `group`."""
  for key, value in group.items():
    if isinstance(value, ml_collections.ConfigDict):
      yield from _references(value, f"{prefix}{key}.")
    elif isinstance(value, str) and value.startswith(STAGE_PREFIX):
      yield f"{prefix}{key}", value


@TRAINERS.register("stages")
def run(config, workdir: str, should_stop: Callable[[int], bool] | None = None) -> dict:
  """Runs the stages in order in `workdir`/<name>/ and returns the job's summary."""
  stages = stage_configs(config, workdir)
  if not stages:
    raise ConfigError("config.trainer='stages' needs config.stages: the stage names in order (e.g. 'sft,grpo')")
  names = [name for name, _ in stages]
  for name, stage in stages:  # a bad trainer name or reward setting stops the job here, not minutes into it
    check_stage(name, stage, names)
  if jax.process_index() == 0:  # the job's config; each stage's trainer writes its own into its directory
    save_run_config(config, workdir)
  summary, results = {}, []
  for name, stage in stages:
    stage_dir = os.path.join(workdir, name)
    result = finished_summary(stage, stage_dir)
    if result is None:
      result = train.run(stage, stage_dir, should_stop=should_stop)
    else:
      print(f"rr: stage {name} finished before with this config ({stage_dir}); not run again", file=sys.stderr)
    summary.update({f"{name}/{k}": v for k, v in result.items()})
    results.append(result)
    if not result.get("finished"):
      break
  summary["finished"] = len(results) == len(stages) and bool(results[-1].get("finished"))
  summary["failed"] = any(bool(r.get("failed")) for r in results)
  summary["wall_seconds"] = sum(float(r.get("wall_seconds", 0.0)) for r in results)
  if len(results) == len(stages):  # the last stage ran: the job's result is its result, from where it started
    summary.update({k: results[-1][k] for k in ("eval/accuracy", "eval/step_accuracy") if k in results[-1]})
    if len(results) > 1 and "eval/accuracy" in results[-2]:
      summary["eval/accuracy_initial"] = results[-2]["eval/accuracy"]
  writer = MetricWriter(workdir, enabled=jax.process_index() == 0)
  writer.write_summary(summary)
  writer.close()
  return summary


def check_stage(name: str, stage, names: Sequence[str] = ()) -> None:
  """The checks of a stage's config that need rr.train: its trainer is registered, its reward, teach and dpo
  settings hold, and every "stage:<name>" it holds (after stage_configs resolved those of earlier stages) is one of
  `names`, the job's stages in order, that runs before it."""
  for key, value in _references(stage):
    target = value[len(STAGE_PREFIX):]
    if target not in names:
      raise ConfigError(f"config.stage.{name}: {key}={value!r} names no stage of this job (stages: "
                        f"{', '.join(names)}); name one that runs before {name!r}")
    where = "is this stage" if target == name else f"runs after {name!r}"
    raise ConfigError(f"config.stage.{name}: {key}={value!r} names stage {target!r}, which {where}; a stage reads "
                      "only the directories of the stages before it")
  train.trainer(stage.trainer, where=f"config.stage.{name}.trainer")
  try:
    if stage.trainer == "grpo":
      grpo.reward_config(stage.rl)
    elif stage.trainer == "teach":
      teach.check_config(stage)
    elif stage.trainer == "dpo":  # the settings only: the negatives may be an earlier stage's, still to be sampled
      dpo.check_settings(stage)
  except ConfigError as e:
    raise ConfigError(f"config.stage.{name}: {e}") from e


def finished_summary(stage, stage_dir: str) -> dict | None:
  """The summary of a finished run of exactly this stage config in `stage_dir`, else None (the stage runs)."""
  try:
    with open(os.path.join(stage_dir, "summary.json")) as f:
      summary = json.load(f)
  except (OSError, ValueError):
    return None
  if not isinstance(summary, dict) or summary.get("finished") is not True:
    return None
  return summary if same_run_config(stage, stage_dir) else None
