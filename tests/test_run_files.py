"""What a run leaves for later: its resolved config.json (kept across resumes, read by `rr.eval` when no
--config is given) and a metrics.jsonl that a crash and rerun leave with one row per (step, keys)."""

import json
import os

import pytest

from rr.config import (ConfigError, apply_overrides, load_config, read_run_config, run_config_files,
                       save_run_config)
from rr.eval.__main__ import main as eval_main
from rr.train.metrics import MetricWriter, read_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SFT = os.path.join(ROOT, "configs", "sft.py") + ":runlocal"


def test_config_json_is_written_once_and_a_changed_resume_goes_beside_it(tmp_path, capsys):
  workdir = str(tmp_path)
  config = load_config(SFT)
  first = save_run_config(config, workdir)
  assert first == os.path.join(workdir, "config.json")
  original = open(first).read()
  assert read_run_config(first).to_dict() == config.to_dict()
  assert save_run_config(load_config(SFT), workdir) == first  # the same config again: nothing new
  assert run_config_files(workdir) == [first]
  capsys.readouterr()

  apply_overrides(config, [("train.steps", "24")])  # a resume that trains for longer
  second = save_run_config(config, workdir)
  assert second == os.path.join(workdir, "config.2.json")
  assert "train.steps (12 -> 24)" in capsys.readouterr().err
  assert open(first).read() == original  # never rewritten
  assert read_run_config(second).train.steps == 24
  assert save_run_config(config, workdir) == second  # compared with the newest
  assert run_config_files(workdir) == [first, second]


def test_a_config_json_with_an_unknown_key_names_the_file(tmp_path):
  path = tmp_path / "config.json"
  values = json.loads(json.dumps(load_config(SFT).to_dict()))
  values["train"]["stpes"] = 3
  path.write_text(json.dumps(values))
  with pytest.raises(ConfigError, match=r"train\.stpes.*config\.json"):
    read_run_config(str(path))


def _run_dir_sharing(sft_workdir, tmp_path, name):
  """A workdir whose checkpoints are the shared SFT run's (a link: nothing of that run is changed)."""
  workdir = tmp_path / name
  workdir.mkdir()
  os.symlink(os.path.join(sft_workdir, "checkpoints"), workdir / "checkpoints")
  return workdir


def _eval(argv):
  assert eval_main([*argv, "--k", "1", "--samples", "1", "--num-examples", "2"]) == 0
  out = argv[argv.index("--out") + 1]
  with open(os.path.join(out, "eval.json")) as f:
    return json.load(f)


def test_eval_without_config_reads_the_newest_run_config_and_config_flag_wins(sft_workdir, tmp_path, capsys):
  with open(os.path.join(sft_workdir, "config.json")) as f:  # the trainer wrote it
    assert json.load(f)["eval"]["max_new_tokens"] == 32
  assert eval_main(["--checkpoint", sft_workdir, "--out", str(tmp_path / "own"), "--k", "1", "--samples", "1",
                    "--num-examples", "2"]) == 0
  assert "config.json" in capsys.readouterr().err

  workdir = _run_dir_sharing(sft_workdir, tmp_path, "resumed")
  config = read_run_config(os.path.join(sft_workdir, "config.json"))
  save_run_config(config, str(workdir))
  apply_overrides(config, [("eval.max_new_tokens", "8")])
  save_run_config(config, str(workdir))  # a resume with another value: config.2.json
  got = _eval(["--checkpoint", str(workdir), "--out", str(tmp_path / "newest")])
  assert got["max_new_tokens"] == 8 and got["num_examples"] == 2
  assert got["checkpoint"] == os.path.join(str(workdir), "checkpoints")
  got = _eval(["--checkpoint", str(workdir / "checkpoints"), "--out", str(tmp_path / "dir"),
               "--config.eval.max_new_tokens=6"])  # overrides apply to the run's config too
  assert got["max_new_tokens"] == 6
  got = _eval(["--checkpoint", str(workdir), "--config", SFT, "--out", str(tmp_path / "given")])
  assert got["max_new_tokens"] == 32


def test_eval_with_neither_config_nor_config_json_is_one_line_naming_both_fixes(sft_workdir, tmp_path, capsys):
  workdir = _run_dir_sharing(sft_workdir, tmp_path, "bare")
  hf = tmp_path / "hf"
  hf.mkdir()
  (hf / "config.json").write_text("{}")  # a Hugging Face model's config.json says nothing of the run
  for checkpoint in (workdir, hf):
    capsys.readouterr()
    assert eval_main(["--checkpoint", str(checkpoint)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rr: error:") and len(err.strip().splitlines()) == 1, err
    assert "--config" in err and "config.json" in err and "--workdir" in err
  assert sorted(os.listdir(workdir)) == ["checkpoints"] and sorted(os.listdir(hf)) == ["config.json"]


def test_a_jobs_config_json_does_not_make_its_workdir_look_like_a_hugging_face_model(tmp_path, capsys):
  job = tmp_path / "job"
  (job / "sft" / "checkpoints").mkdir(parents=True)
  save_run_config(load_config(os.path.join(ROOT, "configs", "distil_then_reinforce.py") + ":runlocal"), str(job))
  assert eval_main(["--checkpoint", str(job)]) == 2
  err = capsys.readouterr().err
  assert "stages keep their own" in err and os.path.join(str(job), "sft") in err, err


def test_resume_drops_rows_past_the_restored_step_and_a_torn_last_line(tmp_path, capsys):
  writer = MetricWriter(str(tmp_path))
  for step in (2, 4, 6):
    writer.write(step, {"train/loss": float(step)})
  writer.write(4, {"eval/accuracy": 0.5})
  writer.close()
  with open(writer.metrics_path, "a") as f:
    f.write('{"step": 8, "train/lo')  # a kill in the middle of a write
  assert [r["step"] for r in read_metrics(writer.metrics_path)] == [2, 4, 6, 4]

  resumed = MetricWriter(str(tmp_path))
  assert resumed.resume(4) == 2
  assert "moved 2 row(s)" in capsys.readouterr().err
  assert read_metrics(resumed.dropped_path) == [{"step": 6, "train/loss": 6.0}]  # set aside, not lost
  resumed.write(4, {"eval/accuracy": 0.75})  # logged again at the restored step: replaces
  resumed.write(6, {"train/loss": 60.0})
  resumed.close()
  rows = read_metrics(writer.metrics_path)
  assert rows == [{"step": 2, "train/loss": 2.0}, {"step": 4, "train/loss": 4.0},
                  {"step": 4, "eval/accuracy": 0.75}, {"step": 6, "train/loss": 60.0}]
  assert not [name for name in os.listdir(tmp_path) if ".tmp" in name]
  assert read_metrics(resumed.dropped_path)[-1] == {"step": 4, "eval/accuracy": 0.5}

  fresh = MetricWriter(str(tmp_path))
  assert fresh.resume(None) == 4  # no checkpoint restored: none of those rows stands
  assert read_metrics(fresh.metrics_path) == [] and len(read_metrics(fresh.dropped_path)) == 2 + 4
