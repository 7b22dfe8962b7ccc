"""Experiments: a grid of (method, seed) runs of rr trainers, each in its own workdir, then one table and plots.

An experiment file (experiments/<name>.py) defines `get_experiment(arg) -> Experiment`, the way a config file
defines get_config(arg); `python -m rr.experiment experiments/<name>.py[:arg] [--dir DIR] [--seeds 0,1,2]` runs it.
Every run goes through `rr.train.run(config, workdir)` in this process, so any trainer (stages included) is a
method. DIR holds:

  experiment.json         which experiment the directory belongs to (rr.experiment writes into no other directory)
  <shared>/               each shared run (a teacher, its sampled data), once, before the grid, in order
  <method>/seed<seed>/    each (method, seed) run; its pass@k evaluation in eval/ (a stages job's: <last stage>/eval/)
  results.md              the table (mean ± sample std over the finished seeds), each seed's values, wall times
  results.json            the same numbers
  <curve>.png             per curve key ("eval/accuracy" -> eval_accuracy.png): every seed's curve, the mean thicker

Rerunning the command resumes: a run whose summary.json says finished and whose newest config.json is its config
now is skipped; one that raised, was stopped (Ctrl-C, SIGTERM) or whose config changed runs again, and its trainer
resumes from its own checkpoints. The results are written again at the end of every invocation, also when a run
raised, so a partial grid is shown with each run's status.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import sys
import time
from typing import Callable, Sequence

import ml_collections

from rr.config import (file_function, read_json_or_none, read_run_config, run_config_files, same_run_config,
                       stage_names, validate)
from rr.errors import UserError


class ExperimentError(UserError):
  """A bad experiment file, argument or directory; the message names it and says how to fix it."""


# ------------------------------------------------------------------------------------------ what a file declares


@dataclasses.dataclass(frozen=True)
class Shared:
  """A run the whole grid needs once (a teacher, the data it samples), at DIR/<name>. `config(paths)` gets the
  directories of the shared runs declared before it, by name."""
  name: str
  config: Callable[[dict], ml_collections.ConfigDict]


@dataclasses.dataclass(frozen=True)
class Method:
  """One row of the table. `config(seed, paths)` is the run's config for one seed (it must set config.seed to
  that seed), `paths` the shared runs' directories by name."""
  name: str
  config: Callable[[int, dict], ml_collections.ConfigDict]
  label: str = ""  # what the tables show; "" = name
  description: str = ""  # one line under the table


@dataclasses.dataclass(frozen=True)
class Column:
  """One column of the table: `value(summary, run_dir)` of a finished run, a number or None (not measured)."""
  title: str
  value: Callable[[dict, str], float | None]
  digits: int = 3


@dataclasses.dataclass(frozen=True)
class PassAtK:
  """After each method run, `python -m rr.eval`'s evaluation of its checkpoint (greedy plus `samples` samples per
  question at `temperature`), written where rr.eval writes it; pass_at_k_column reads it."""
  ks: tuple[int, ...] = (1, 8)
  samples: int = 0  # 0 = the largest k
  num_examples: int = 0  # held-out questions; 0 = the run's config.eval.num_examples
  temperature: float = 1.0
  # (dotted key, value) config overrides of what is evaluated, as rr.eval's command line takes them, or a function of
  # the run's config that returns them: e.g. lambda c: [("data.format", "rationale")] if c.data.format == "text"
  # else [] asks a run trained on a task written out as plain text the task's questions
  overrides: tuple[tuple[str, str], ...] | Callable = ()


def summary_column(key: str, title: str = "", digits: int = 3) -> Column:
  """The run's summary.json value of `key` (a stages job's holds the last stage's eval/ keys and the stages' sum
  of wall_seconds)."""

  def value(summary: dict, run_dir: str):
    return summary.get(key)

  return Column(title or key, value, digits)


def pass_at_k_column(k: int, title: str = "") -> Column:
  """pass@k from the run's current rr.eval evaluation (see `current_evaluation`); needs Experiment.pass_at_k with
  k among its ks."""

  def value(summary: dict, run_dir: str):
    return (current_evaluation(run_dir) or {}).get(f"pass@{k}")

  return Column(title or f"pass@{k}", value)


ACCURACY = summary_column("eval/accuracy", "held-out accuracy")
STEP_ACCURACY = summary_column("eval/step_accuracy", "step accuracy")
WALL_SECONDS = summary_column("wall_seconds", "wall time (s)", digits=0)


@dataclasses.dataclass(frozen=True)
class Experiment:
  name: str  # names the default directory and heads results.md
  methods: Sequence[Method]
  seeds: Sequence[int] = (0, 1, 2)
  shared: Sequence[Shared] = ()
  columns: Sequence[Column] = (ACCURACY, WALL_SECONDS)
  pass_at_k: PassAtK | None = None
  curves: Sequence[str] = ("eval/accuracy",)  # metrics.jsonl keys plotted against step, one PNG each


@dataclasses.dataclass(frozen=True)
class Run:
  """One run of the grid with its config built: a shared run (method None) or a (method, seed) run."""
  name: str  # "teacher", "sft/seed0"
  directory: str
  config: ml_collections.ConfigDict
  method: Method | None = None
  seed: int | None = None


NAME = re.compile(r"[A-Za-z0-9_-]+")  # it names a directory under DIR
MARKER = "experiment.json"


# ------------------------------------------------------------------------------------------ loading and checks


def load_experiment(spec: str) -> Experiment:
  """`experiments/<name>.py[:arg]` -> its get_experiment(arg), checked to be an Experiment."""
  path, _, arg = spec.partition(":")
  get_experiment = file_function(path, "get_experiment", "experiment file", ExperimentError,
                                 "pass experiments/<name>.py[:arg] (a file that defines get_experiment(arg))")
  experiment = get_experiment(arg or None)
  if not isinstance(experiment, Experiment):
    raise ExperimentError(f"experiment file {path!r}: get_experiment returned a {type(experiment).__name__}, not an "
                          "rr.experiment.Experiment")
  return experiment


def default_directory(experiment: Experiment, arg: str = "") -> str:
  """<system temp dir>/rr_experiment_<name>[_<arg>]: a variant (`:runlocal`) never shares the full run's runs."""
  import tempfile

  suffix = "_" + re.sub(r"[^A-Za-z0-9_.-]+", "_", arg) if arg else ""
  return os.path.join(tempfile.gettempdir(), f"rr_experiment_{experiment.name}{suffix}")


def plan(experiment: Experiment, directory: str, seeds: Sequence[int] | None = None,
         source: str = "the experiment") -> tuple[list[Run], list[Run]]:
  """(shared runs in order, method runs seed by seed), every config built and checked: a mistake in any of them
  is one ExperimentError or ConfigError before the first run starts. Seed-major order, so the first seed of every
  method finishes before the second of any, and a partial grid already compares all methods."""
  seeds = list(experiment.seeds if seeds is None else seeds)
  _check_experiment(experiment, seeds, source)
  directory = os.path.abspath(directory)
  shared, paths = [], {}
  for item in experiment.shared:
    where = f"{source}: shared run {item.name!r}"
    run_dir = os.path.join(directory, item.name)
    shared.append(Run(item.name, run_dir, _checked_config(item.config(dict(paths)), where, run_dir)))
    paths[item.name] = run_dir
  runs = []
  for seed in seeds:
    for method in experiment.methods:
      where = f"{source}: method {method.name!r}, seed {seed}"
      run_dir = os.path.join(directory, method.name, f"seed{seed}")
      config = _checked_config(method.config(seed, dict(paths)), where, run_dir)
      if config.seed != seed:
        raise ExperimentError(f"{where}: the config has seed={config.seed}, so every seed would train the same "
                              "run; set c.seed = seed in the method's config function")
      runs.append(Run(f"{method.name}/seed{seed}", run_dir, config, method, seed))
  return shared, runs


def _check_experiment(experiment: Experiment, seeds: list[int], source: str) -> None:
  if not isinstance(experiment.name, str) or not NAME.fullmatch(experiment.name):
    raise ExperimentError(f"{source}: Experiment name {experiment.name!r} must be letters, digits, '_' or '-'")
  if not experiment.methods:
    raise ExperimentError(f"{source}: Experiment {experiment.name!r} has no methods")
  integers = all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
  if not seeds or not integers or len(set(seeds)) < len(seeds):
    raise ExperimentError(f"{source}: seeds {seeds!r} must be distinct integers, at least one")
  names = [s.name for s in experiment.shared] + [m.name for m in experiment.methods]
  for name in names:
    if not isinstance(name, str) or not NAME.fullmatch(name):
      raise ExperimentError(f"{source}: run name {name!r} must be letters, digits, '_' or '-' (it names a directory)")
  twice = sorted({n for n in names if names.count(n) > 1})
  if twice:
    raise ExperimentError(f"{source}: {', '.join(map(repr, twice))} names more than one shared run or method; "
                          "each needs its own directory")
  if not all(isinstance(c, Column) for c in experiment.columns):
    raise ExperimentError(f"{source}: Experiment columns must be rr.experiment.Column (e.g. summary_column(key))")
  titles = [c.title for c in experiment.columns]
  if len(set(titles)) < len(titles):
    raise ExperimentError(f"{source}: two columns have the title {next(t for t in titles if titles.count(t) > 1)!r}; "
                          "give each its own")
  if experiment.pass_at_k is not None:
    from rr.eval.run import check_sampling_flags

    spec = experiment.pass_at_k
    check_sampling_flags(list(spec.ks), spec.samples or max(spec.ks), spec.temperature, 10, spec.num_examples or None)


def _checked_config(config, where: str, run_dir: str) -> ml_collections.ConfigDict:
  """The run's config validated, its trainer registered, and a stages job's every stage checked."""
  from rr import train

  if not isinstance(config, ml_collections.ConfigDict):
    raise ExperimentError(f"{where}: the config function returned a {type(config).__name__}, not a ConfigDict")
  validate(config, source=where)
  train.trainer(config.trainer, where=f"{where}: config.trainer")
  if config.trainer == "stages":
    from rr.train import stages

    job = stages.stage_configs(config, run_dir)
    for name, stage in job:  # what the stages trainer checks when it starts, here before the grid starts
      stages.check_stage(name, stage, [n for n, _ in job])
  return config


def claim_directory(directory: str, experiment: Experiment, source: str) -> None:
  """Makes `directory` this experiment's (experiment.json); refuses one that holds another experiment's runs or
  files rr.experiment did not write, since rr never overwrites a user's files."""
  marker = os.path.join(directory, MARKER)
  if os.path.isfile(marker):
    owner = read_json_or_none(marker)
    if not isinstance(owner, dict) or owner.get("experiment") != experiment.name:
      name = owner.get("experiment") if isinstance(owner, dict) else None
      raise ExperimentError(f"--dir {directory} holds the runs of experiment {name!r} ({marker}), not of "
                            f"{experiment.name!r}; pass another --dir")
    return
  if os.path.exists(directory) and (not os.path.isdir(directory) or os.listdir(directory)):
    raise ExperimentError(f"--dir {directory} already holds files rr.experiment did not write (it has no {MARKER}); "
                          "rr never overwrites a user's files: pass a new or empty --dir")
  os.makedirs(directory, exist_ok=True)
  with open(marker, "x") as f:
    json.dump({"experiment": experiment.name, "file": source}, f, indent=2)
    f.write("\n")


# ------------------------------------------------------------------------------------------ running the grid


def run(experiment: Experiment, directory: str, seeds: Sequence[int] | None = None,
        source: str = "the experiment") -> bool:
  """Runs every shared and (method, seed) run that has not finished with its config, evaluates pass@k where
  asked, and writes the results (also when a run raises). Returns whether every run finished: False when a run
  stopped unfinished (Ctrl-C, SIGTERM), which ends the grid there."""
  from rr.experiment import results

  shared, runs = plan(experiment, directory, seeds, source)
  directory = os.path.abspath(directory)
  claim_directory(directory, experiment, source)
  complete = True
  try:
    for number, item in enumerate(shared + runs, 1):
      if not _run_once(item, f"[{number}/{len(shared) + len(runs)}] {item.name}"):
        complete = False
        break
      if item.method is not None and experiment.pass_at_k is not None:
        _evaluate(item, experiment.pass_at_k)
  finally:
    say(f"wrote {', '.join(results.write(experiment, directory, shared, runs))} in {directory}")
  return complete


def _run_once(item: Run, heading: str) -> bool:
  """Trains `item` unless it finished before with this config; whether it is finished now."""
  from rr import train

  state, summary = run_status(item)
  if state == "finished":
    say(f"{heading}: finished before with this config ({_seconds(summary.get('wall_seconds'))}); skipped")
    return True
  start = time.time()
  try:
    summary = train.run(item.config, item.directory)
  except BaseException as e:
    say(f"{heading}: raised {type(e).__name__} after {time.time() - start:.0f} s; run the same command again to "
        "resume it")
    raise
  done = summary.get("finished") is True
  verb = {"not started": "ran", "stale": "ran again (its config changed)"}.get(state, "resumed")
  say(f"{heading}: {verb} in {time.time() - start:.0f} s" +
      ("" if done else "; stopped unfinished: run the same command again to resume"))
  return done


def run_status(item: Run) -> tuple[str, dict | None]:
  """(status, summary.json or None): "finished" (with the config it has now: skipped on a rerun), "stale"
  (finished with another config), "unfinished" (raised or stopped) or "not started". The finished test is
  rr.train.stages.finished_summary's: summary.json's `finished` and rr.config.same_run_config."""
  summary = read_json_or_none(os.path.join(item.directory, "summary.json"))
  if not isinstance(summary, dict):
    return ("unfinished" if os.path.isdir(item.directory) else "not started"), None
  if summary.get("finished") is not True:
    return "unfinished", summary
  return ("finished" if same_run_config(item.config, item.directory) else "stale"), summary


def _evaluate(item: Run, spec: PassAtK) -> None:
  """rr.eval of the run's checkpoint into the first free eval/, eval.2/, ... of the evaluated directory, unless
  its current evaluation already has these ks, samples and temperature."""
  from rr.eval import run as eval_run

  ks, samples = sorted(set(spec.ks)), spec.samples or max(spec.ks)
  current = current_evaluation(item.directory)
  if current is not None and all(f"pass@{k}" in current for k in ks) and current.get("num_samples") == samples \
      and current.get("temperature") == spec.temperature:
    return
  target = evaluated_dir(item.directory)
  taken = eval_dirs(target)
  out = os.path.join(target, "eval" if not taken else f"eval.{_eval_number(taken[-1]) + 1}")
  config = eval_run.run_config(target)
  overrides = list(spec.overrides(config) if callable(spec.overrides) else spec.overrides)
  found = eval_run.evaluate(target, config, k=ks, samples=samples, temperature=spec.temperature,
                            num_examples=spec.num_examples or None, out=out, overrides=overrides)
  passes = ", ".join(f"pass@{k} {found[f'pass@{k}']:.3f}" for k in ks)
  say(f"  {item.name}: evaluated in {found['seconds']:.0f} s: {passes} ({out})")


# ------------------------------------------------------------------------------------------ reading a run


def stage_dirs(run_dir: str) -> list[str]:
  """The directories a run trained in, in order: a stages job's stage directories, else the run's own."""
  files = run_config_files(run_dir)
  if files:
    config = read_run_config(files[-1])
    if config.trainer == "stages":
      return [os.path.join(run_dir, name) for name in stage_names(config)]
  return [run_dir]


def evaluated_dir(run_dir: str) -> str:
  """What `python -m rr.eval --checkpoint` is given for this run: the run's directory, or a stages job's last
  stage (whose checkpoint is the job's result)."""
  return stage_dirs(run_dir)[-1]


def eval_dirs(target: str) -> list[str]:
  """The evaluations of `target`, oldest first: eval/ (rr.eval's default --out), then eval.2/, eval.3/, ...,
  written when a rerun trained further or asked for other ks (rr.eval never overwrites one)."""
  found = [(1, os.path.join(target, "eval"))] if os.path.isdir(os.path.join(target, "eval")) else []
  if os.path.isdir(target):
    found += [(_eval_number(name), os.path.join(target, name)) for name in os.listdir(target)
              if _eval_number(name) >= 2 and os.path.isdir(os.path.join(target, name))]
  return [path for _, path in sorted(found)]


def _eval_number(name: str) -> int:
  """eval -> 1, eval.<n> -> n, anything else -> 0."""
  name = os.path.basename(name)
  if name == "eval":
    return 1
  middle = name[len("eval."):] if name.startswith("eval.") else ""
  return int(middle) if middle.isdigit() else 0


def current_evaluation(run_dir: str) -> dict | None:
  """The eval.json of the newest evaluation of the run's final checkpoint (its step is the evaluated directory's
  summary step), or None: an evaluation of an earlier checkpoint, or one a kill cut short, does not count."""
  target = evaluated_dir(run_dir)
  summary = read_json_or_none(os.path.join(target, "summary.json"))
  step = summary.get("step") if isinstance(summary, dict) else None
  for path in reversed(eval_dirs(target)):
    found = read_json_or_none(os.path.join(path, "eval.json"))
    if isinstance(found, dict) and step is not None and found.get("step") == step:
      return found
  return None


def curve(run_dir: str, key: str) -> list[tuple[int, float]]:
  """(step, value) of `key` in the run's metrics.jsonl; a stages job's stages follow each other, each stage's steps
  offset by the steps of the stages before it (their summary's step, else their last logged step)."""
  from rr.train.metrics import read_metrics

  points, offset = [], 0
  for path in stage_dirs(run_dir):
    rows = read_metrics(os.path.join(path, "metrics.jsonl"))
    points += [(offset + r["step"], float(r[key])) for r in rows if isinstance(r.get(key), (int, float))]
    summary = read_json_or_none(os.path.join(path, "summary.json"))
    last = summary.get("step") if isinstance(summary, dict) else None
    offset += int(last) if isinstance(last, (int, float)) else max((r["step"] for r in rows), default=0)
  return points


# ------------------------------------------------------------------------------------------ small helpers


def say(message: str) -> None:
  print(f"rr.experiment: {message}", file=sys.stderr, flush=True)


def _seconds(value) -> str:
  return f"{value:.0f} s" if isinstance(value, (int, float)) and math.isfinite(value) else "time unknown"
