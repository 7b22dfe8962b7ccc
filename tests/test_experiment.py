"""rr.experiment: a grid of (method, seed) runs skipped, resumed and rerun as their directories say, one table whose
numbers are checked against numpy, plots, the refusals of the command line, and one real SFT run with pass@k.

Toy trainers stand in for training: they write what rr's trainers write (config.json, metrics.jsonl and
summary.json through rr.config.save_run_config and MetricWriter) and count their calls.
"""

import collections
import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from rr import experiment as ex
from rr.config import base_config, save_run_config
from rr.experiment.__main__ import main
from rr.train import TRAINERS
from rr.train.metrics import MetricWriter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CALLS = collections.Counter()  # workdir -> trainer calls in this test
CONFIGS = {}  # workdir -> the config its trainer was last called with
FAILS_LEFT = collections.Counter()  # trainer name -> first calls that still fail


def toy_accuracy(difficulty: int, seed: int) -> float:
  return difficulty / 10 + seed ** 2 / 100


def _toy(config, workdir, should_stop=None, finished=True):
  CALLS[workdir] += 1
  CONFIGS[workdir] = config
  save_run_config(config, workdir)
  writer = MetricWriter(workdir)
  writer.resume(None)
  accuracy = toy_accuracy(config.data.difficulty, config.seed)
  for step in range(0, config.train.steps + 1, 2):
    writer.write(step, {"eval/accuracy": accuracy * step / config.train.steps})
  summary = {"step": config.train.steps, "finished": finished, "wall_seconds": 1.5 + config.seed,
             "eval/accuracy": accuracy}
  writer.write_summary(summary)
  writer.close()
  return summary


def _flaky(config, workdir, should_stop=None):
  """Raises on its first call in a test, as a crash would, after writing what a started run writes."""
  if FAILS_LEFT["toy_flaky"]:
    FAILS_LEFT["toy_flaky"] -= 1
    CALLS[workdir] += 1
    save_run_config(config, workdir)
    raise RuntimeError("toy failure")
  return _toy(config, workdir)


def _stops(config, workdir, should_stop=None):
  """Stops unfinished on its first call in a test, as Ctrl-C or SIGTERM make a trainer do."""
  stop = FAILS_LEFT["toy_stops"] > 0
  FAILS_LEFT["toy_stops"] -= stop
  return _toy(config, workdir, finished=not stop)


@pytest.fixture(autouse=True)
def toy_trainers():
  CALLS.clear()
  CONFIGS.clear()
  FAILS_LEFT.clear()
  FAILS_LEFT["toy_flaky"] = FAILS_LEFT["toy_stops"] = 1
  for name, trainer in (("toy", _toy), ("toy_flaky", _flaky), ("toy_stops", _stops)):
    TRAINERS.register(name)(trainer)
  yield
  for name in ("toy", "toy_flaky", "toy_stops"):
    TRAINERS.unregister(name)


EXPERIMENT = textwrap.dedent('''
    from rr.config import base_config, parse_arg
    from rr.experiment import ACCURACY, WALL_SECONDS, Experiment, Method, Shared


    def _config(trainer, seed, difficulty):
      c = base_config()
      c.trainer = trainer
      c.seed = seed
      c.data.difficulty = difficulty
      c.train.steps = 4
      return c


    def _data(paths):
      c = _config("toy", 0, 8)
      c.distill.teacher = paths["teacher"]
      return c


    def _method(trainer, difficulty, fixed_seed=False):
      def config(seed, paths):
        c = _config(trainer, 0 if fixed_seed else seed, difficulty)
        c.init_checkpoint = paths["teacher"]
        c.data.rationales_path = paths["data"]
        return c
      return config


    def get_experiment(arg=None):
      args = parse_arg(arg, hard=5, second="toy", fixed_seed=False)
      return Experiment(
          name="toy", shared=[Shared("teacher", lambda paths: _config("toy", 0, 9)), Shared("data", _data)],
          methods=[Method("easy", _method("toy", 2), label="Easy", description="the easy one"),
                   Method("hard", _method(args.second, args.hard, args.fixed_seed), label="Hard")],
          seeds=(0, 1, 2), columns=(ACCURACY, WALL_SECONDS))
''')


def _experiment_file(tmp_path) -> str:
  path = tmp_path / "toy_experiment.py"
  path.write_text(EXPERIMENT)
  return str(path)


def _read(path):
  with open(path) as f:
    return json.load(f) if str(path).endswith(".json") else f.read()


def _run_dirs(directory, seeds=(0, 1, 2)) -> dict:
  dirs = {name: os.path.join(directory, name) for name in ("teacher", "data")}
  dirs.update({f"{m}/seed{s}": os.path.join(directory, m, f"seed{s}") for m in ("easy", "hard") for s in seeds})
  return dirs


def test_grid_runs_each_run_once_aggregates_by_hand_numbers_and_skips_finished_runs(tmp_path, capsys):
  path, directory = _experiment_file(tmp_path), str(tmp_path / "exp")
  assert main([path, "--dir", directory]) == 0
  dirs = _run_dirs(directory)
  assert dict(CALLS) == {d: 1 for d in dirs.values()}
  # shared runs ran first, each seeing the ones before it; every method run got both paths
  assert CONFIGS[dirs["data"]].distill.teacher == dirs["teacher"]
  for name, run_dir in dirs.items():
    if "/" in name:
      assert CONFIGS[run_dir].init_checkpoint == dirs["teacher"]
      assert CONFIGS[run_dir].data.rationales_path == dirs["data"]
      assert CONFIGS[run_dir].seed == int(name[-1])

  results, text = _read(os.path.join(directory, "results.json")), _read(os.path.join(directory, "results.md"))
  methods = {m["name"]: m for m in results["methods"]}
  wall = np.array([1.5 + s for s in (0, 1, 2)])
  for name, label, difficulty in (("easy", "Easy", 2), ("hard", "Hard", 5)):
    accuracy = np.array([toy_accuracy(difficulty, s) for s in (0, 1, 2)])
    stats = methods[name]["columns"]
    assert stats["held-out accuracy"]["mean"] == pytest.approx(accuracy.mean())
    assert stats["held-out accuracy"]["std"] == pytest.approx(accuracy.std(ddof=1))
    assert stats["held-out accuracy"]["n"] == 3 and methods[name]["finished"] == 3
    assert stats["wall time (s)"]["std"] == pytest.approx(wall.std(ddof=1))
    assert (f"| {label} | 3/3 | {accuracy.mean():.3f} ± {accuracy.std(ddof=1):.3f} | {wall.mean():.0f} ± "
            f"{wall.std(ddof=1):.0f} |") in text
    for seed in (0, 1, 2):
      assert f"| {label} | {seed} | finished | {accuracy[seed]:.3f} | {wall[seed]:.0f} |" in text
  assert results["wall_seconds"] == {"method_runs": 2 * wall.sum(), "shared_runs": 2 * 1.5, "evaluations": 0.0,
                                     "total": 2 * wall.sum() + 3.0}
  assert "**18 s** in all" in text and "- **Easy**: the easy one" in text and "| teacher | finished | 2 |" in text
  with open(os.path.join(directory, "eval_accuracy.png"), "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  assert "![eval_accuracy.png](eval_accuracy.png)" in text
  out, err = capsys.readouterr()
  assert "| Easy | 3/3 |" in out and err.count(": ran in ") == 8

  assert main([path, "--dir", directory]) == 0  # a rerun trains nothing
  assert dict(CALLS) == {d: 1 for d in dirs.values()}
  assert capsys.readouterr().err.count("finished before with this config") == 8

  assert main([path + ":hard=6", "--dir", directory]) == 0  # only the runs whose config changed run again
  assert dict(CALLS) == {d: 1 + (name.startswith("hard/")) for name, d in dirs.items()}
  assert capsys.readouterr().err.count("ran again (its config changed)") == 3
  accuracy = np.array([toy_accuracy(6, s) for s in (0, 1, 2)])
  hard = {m["name"]: m for m in _read(os.path.join(directory, "results.json"))["methods"]}["hard"]
  assert hard["columns"]["held-out accuracy"]["mean"] == pytest.approx(accuracy.mean())

  assert main([path + ":hard=6", "--dir", directory, "--seeds", "0,3"]) == 0  # a new seed is one more run each
  assert CALLS[os.path.join(directory, "easy", "seed3")] == 1 and CALLS[dirs["easy/seed0"]] == 1
  results = _read(os.path.join(directory, "results.json"))
  assert results["seeds"] == [0, 3] and all(m["finished"] == 2 for m in results["methods"])
  easy = np.array([toy_accuracy(2, s) for s in (0, 3)])
  assert results["methods"][0]["columns"]["held-out accuracy"]["std"] == pytest.approx(easy.std(ddof=1))

  calls = dict(CALLS)  # --report under the first config: hard's runs finished with another one, and nothing runs
  assert main([path, "--dir", directory, "--seeds", "0,3", "--report"]) == 0 and dict(CALLS) == calls
  text = _read(os.path.join(directory, "results.md"))
  assert "| Hard | 0/2 (seed 0 stale, seed 3 stale) | – | – |" in text and "| Easy | 2/2 |" in text


@pytest.mark.parametrize("trainer", ["toy_flaky", "toy_stops"])
def test_a_run_that_raised_or_stopped_is_shown_unfinished_and_runs_again(tmp_path, capsys, trainer):
  path, directory = _experiment_file(tmp_path) + f":second={trainer}", str(tmp_path / "exp")
  if trainer == "toy_flaky":
    with pytest.raises(RuntimeError, match="toy failure"):
      main([path, "--dir", directory])
  else:
    assert main([path, "--dir", directory]) == 1  # stopped: the grid ends there, the same command resumes
  dirs = _run_dirs(directory)
  # seed-major order: the first seed of every method, then the next seed
  assert dict(CALLS) == {dirs["teacher"]: 1, dirs["data"]: 1, dirs["easy/seed0"]: 1, dirs["hard/seed0"]: 1}
  text = _read(os.path.join(directory, "results.md"))  # written although the grid stopped
  assert "| Hard | 0/3 (seed 0 unfinished, seed 1 not started, seed 2 not started) | – | – |" in text
  assert f"| Easy | 1/3 (seed 1 not started, seed 2 not started) | {toy_accuracy(2, 0):.3f} | 2 |" in text
  stopped_wall = "–" if trainer == "toy_flaky" else "2"  # a stopped run wrote its summary, a crashed one none
  assert f"| Hard | 0 | unfinished | – | {stopped_wall} |" in text
  capsys.readouterr()

  assert main([path, "--dir", directory]) == 0
  assert dict(CALLS) == {d: 1 + (name == "hard/seed0") for name, d in dirs.items()}
  assert "hard/seed0: resumed in" in capsys.readouterr().err
  hard = _read(os.path.join(directory, "results.json"))["methods"][1]
  assert hard["finished"] == 3 and hard["columns"]["held-out accuracy"]["n"] == 3


def _stages_config(seed, paths):
  c = base_config()
  c.trainer, c.seed, c.stages = "stages", seed, "first,second"
  c.train.steps = 4
  c.stage.first = {"trainer": "toy", "data": {"difficulty": 2}}
  c.stage.second = {"trainer": "toy", "data": {"difficulty": 6}, "train": {"steps": 6}}
  return c


def test_a_stages_run_curve_follows_its_stages_and_pass_at_k_reads_the_last_stages_current_evaluation(tmp_path):
  experiment = ex.Experiment("chain", [ex.Method("chain", _stages_config)], seeds=(0,),
                             columns=(ex.ACCURACY, ex.pass_at_k_column(2)))
  directory = str(tmp_path / "exp")
  assert ex.run(experiment, directory)
  run_dir = os.path.join(directory, "chain", "seed0")
  points = ex.curve(run_dir, "eval/accuracy")
  steps = [0, 2, 4] + [4 + s for s in (0, 2, 4, 6)]  # the second stage's steps after the first's 4
  values = [0.2 * s / 4 for s in (0, 2, 4)] + [0.6 * s / 6 for s in (0, 2, 4, 6)]
  assert [p[0] for p in points] == steps and np.allclose([p[1] for p in points], values)

  second = os.path.join(run_dir, "second")
  assert ex.evaluated_dir(run_dir) == second and ex.current_evaluation(run_dir) is None

  def evaluation(name, found):
    os.makedirs(os.path.join(second, name))
    with open(os.path.join(second, name, "eval.json"), "w") as f:
      json.dump(found, f)

  evaluation("eval", {"step": 4, "pass@2": 0.1})  # of an earlier checkpoint (4 of the stage's 6 steps)
  assert ex.current_evaluation(run_dir) is None and ex.pass_at_k_column(2).value({}, run_dir) is None
  evaluation("eval.2", {"step": 6, "pass@2": 0.25, "seconds": 3.0})
  os.makedirs(os.path.join(second, "eval.3"))
  with open(os.path.join(second, "eval.3", "eval.json"), "w") as f:
    f.write('{"step": 6, "pass@2": 0.9')  # cut short by a kill: does not count
  assert ex.current_evaluation(run_dir)["pass@2"] == 0.25
  assert ex.run(experiment, directory)  # skipped; the table reads the evaluation
  results = _read(os.path.join(directory, "results.json"))
  assert results["methods"][0]["columns"]["pass@2"]["mean"] == 0.25
  assert results["methods"][0]["columns"]["held-out accuracy"]["mean"] == pytest.approx(0.6)
  assert results["wall_seconds"]["evaluations"] == 3.0


def test_command_line_refuses_bad_input_before_any_run(tmp_path, capsys):
  missing = str(tmp_path / "missing.py")
  done = subprocess.run([sys.executable, "-m", "rr.experiment", missing], capture_output=True, text=True, cwd=ROOT)
  assert done.returncode == 2
  assert done.stderr.strip() == (f"rr: error: experiment file {missing!r} does not exist; pass "
                                 "experiments/<name>.py[:arg] (a file that defines get_experiment(arg))")
  path, directory = _experiment_file(tmp_path), str(tmp_path / "exp")
  no_function = tmp_path / "empty.py"
  no_function.write_text("x = 1\n")
  cases = [
      ([path + ":hadr=3"], r"config argument 'hadr' is unknown; this config accepts: fixed_seed, hard, second"),
      ([path, "--sedes", "0"], r"unrecognized arguments: --sedes 0"),
      ([path, "--seeds", "0,x"], r"--seeds '0,x' is not a comma-separated list of distinct integers"),
      ([path, "--seeds", "1,1"], r"--seeds '1,1' is not a comma-separated list of distinct integers"),
      ([], r"the experiment file is required"),
      ([str(no_function)], r"has no get_experiment\(arg\) function"),
      ([path + ":second=toy_missing"], r"method 'hard', seed 0: config.trainer: no trainer 'toy_missing' is "
                                       r"registered"),
      ([path + ":fixed_seed"], r"method 'hard', seed 1: the config has seed=0, so every seed would train the same "
                               r"run; set c.seed = seed"),
      ([path, "--report"], r"holds no runs of an experiment \(no experiment.json\)"),
  ]
  for argv, message in cases:
    assert main([*argv, "--dir", directory]) == 2, argv
    err = capsys.readouterr().err
    assert err.startswith("rr: error: ") and re.search(message, err), (argv, err)
  assert not CALLS and not os.path.exists(directory)

  os.makedirs(directory)
  with open(os.path.join(directory, "notes.txt"), "w") as f:
    f.write("mine")
  assert main([path, "--dir", directory]) == 2
  assert "already holds files rr.experiment did not write" in capsys.readouterr().err
  assert os.listdir(directory) == ["notes.txt"] and _read(os.path.join(directory, "notes.txt")) == "mine"
  other = str(tmp_path / "other")
  os.makedirs(other)
  with open(os.path.join(other, "experiment.json"), "w") as f:
    json.dump({"experiment": "distill"}, f)
  assert main([path, "--dir", other]) == 2
  assert "holds the runs of experiment 'distill'" in capsys.readouterr().err
  assert not CALLS


SFT_EXPERIMENT = textwrap.dedent('''
    from rr.config import apply_overrides, load_config
    from rr.experiment import ACCURACY, Experiment, Method, PassAtK, pass_at_k_column


    def _sft(seed, paths):
      c = load_config({config!r})
      apply_overrides(c, [("seed", str(seed)), ("train.steps", "4"), ("train.eval_every", "0"),
                          ("train.checkpoint_every", "4"), ("data.train_size", "32"), ("data.test_size", "4"),
                          ("eval.num_examples", "4"), ("eval.max_new_tokens", "16")])
      return c


    def get_experiment(arg=None):
      return Experiment("tiny", [Method("sft", _sft)], seeds=(0,), columns=(ACCURACY, pass_at_k_column(2)),
                        pass_at_k=PassAtK(ks=(1, 2), num_examples=4))
''')


def test_a_real_sft_run_is_evaluated_once_where_rr_eval_writes_and_tabled(tmp_path, capsys):
  path = tmp_path / "tiny.py"
  path.write_text(SFT_EXPERIMENT.format(config=os.path.join(ROOT, "configs", "sft.py") + ":runlocal"))
  directory = str(tmp_path / "exp")
  assert main([str(path), "--dir", directory]) == 0
  run_dir = os.path.join(directory, "sft", "seed0")
  found = _read(os.path.join(run_dir, "eval", "eval.json"))
  assert found["step"] == 4 and found["num_samples"] == 2 and found["num_examples"] == 4
  summary = _read(os.path.join(run_dir, "summary.json"))
  stats = _read(os.path.join(directory, "results.json"))["methods"][0]["columns"]
  assert stats["pass@2"]["mean"] == found["pass@2"] and stats["held-out accuracy"]["mean"] == summary["eval/accuracy"]
  assert os.path.getsize(os.path.join(directory, "eval_accuracy.png")) > 0
  assert "sft/seed0: evaluated in" in capsys.readouterr().err
  before = os.path.getmtime(os.path.join(run_dir, "eval", "eval.json"))

  assert main([str(path), "--dir", directory]) == 0  # neither trained nor evaluated again
  err = capsys.readouterr().err
  assert "finished before with this config" in err and "evaluated in" not in err
  assert os.path.getmtime(os.path.join(run_dir, "eval", "eval.json")) == before
  assert not os.path.exists(os.path.join(run_dir, "eval.2"))
