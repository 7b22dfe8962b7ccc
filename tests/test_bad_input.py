"""Bad input ends with one clear message and exit status 2, before training, and loses nothing."""

import hashlib
import json
import os

import pytest

from rr.main import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SFT = os.path.join(ROOT, "configs", "sft.py")
JSONL = os.path.join(ROOT, "configs", "sft_jsonl.py")


def run_main(capsys, *argv):
  code = main(list(argv))
  err = capsys.readouterr().err
  return code, err


def tree_digest(path):
  """Hash of every file's name and bytes under `path`: equal before and after means nothing was touched."""
  digest = hashlib.sha256()
  for folder, _, files in sorted(os.walk(path)):
    for name in sorted(files):
      full = os.path.join(folder, name)
      digest.update(full.encode())
      with open(full, "rb") as f:
        digest.update(f.read())
  return digest.hexdigest()


def test_missing_jsonl_file(tmp_path, capsys):
  missing = tmp_path / "nope.jsonl"
  code, err = run_main(capsys, "--config", f"{JSONL}:runlocal,train={missing}", "--workdir", str(tmp_path / "w"))
  assert code == 2 and str(missing) in err and err.count("\n") == 1
  assert not (tmp_path / "w").exists()


def test_empty_jsonl_file(tmp_path, capsys):
  empty = tmp_path / "empty.jsonl"
  empty.write_text("")
  code, err = run_main(capsys, "--config", f"{JSONL}:runlocal,train={empty}", "--workdir", str(tmp_path / "w"))
  assert code == 2 and str(empty) in err and "empty" in err
  assert not (tmp_path / "w").exists()


def test_malformed_jsonl_line_is_reported_with_its_number(tmp_path, capsys):
  bad = tmp_path / "bad.jsonl"
  bad.write_text('{"question": "1+1", "answer": "2"}\n{"question": "2+2", "answer": \n')
  code, err = run_main(capsys, "--config", f"{JSONL}:runlocal,train={bad}", "--workdir", str(tmp_path / "w"))
  assert code == 2 and str(bad) in err and "line 2" in err


def test_missing_tokenizer_directory(tmp_path, capsys):
  missing = tmp_path / "no_tokenizer"
  code, err = run_main(capsys, "--config", f"{SFT}:runlocal", "--config.tokenizer.kind=hf",
                       f"--config.tokenizer.path={missing}", "--workdir", str(tmp_path / "w"))
  assert code == 2 and str(missing) in err
  assert not (tmp_path / "w").exists()


@pytest.fixture(scope="module")
def finished_workdir(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("done"))
  assert main(["--config", f"{SFT}:runlocal", "--workdir", workdir, "--config.train.eval_every=0",
               "--config.eval.num_examples=4"]) == 0
  return workdir


def test_checkpoint_from_another_model_shape_is_refused(finished_workdir, capsys):
  before = tree_digest(finished_workdir + "/checkpoints")
  code, err = run_main(capsys, "--config", f"{SFT}:runlocal", "--workdir", finished_workdir,
                       "--config.model.preset=tiny")
  assert code == 2 and "model=" in err and "new --workdir" in err
  assert tree_digest(finished_workdir + "/checkpoints") == before


def test_corrupt_checkpoint_is_reported_and_left_in_place(finished_workdir, tmp_path, capsys):
  import shutil
  workdir = str(tmp_path / "copy")
  shutil.copytree(finished_workdir, workdir)
  state_dir = os.path.join(workdir, "checkpoints", "12", "state")
  for folder, _, files in os.walk(state_dir):  # garble every array file of the latest checkpoint
    for name in files:
      if name not in ("_METADATA", "commit_success.txt", "_CHECKPOINT_METADATA"):
        with open(os.path.join(folder, name), "wb") as f:
          f.write(b"garbage")
  before = tree_digest(os.path.join(workdir, "checkpoints"))
  code, err = run_main(capsys, "--config", f"{SFT}:runlocal", "--workdir", workdir)
  assert code == 2 and "checkpoints/12" in err and "corrupt" in err
  assert tree_digest(os.path.join(workdir, "checkpoints")) == before


def test_unreadable_checkpoint_record_is_reported(finished_workdir, tmp_path, capsys):
  import shutil
  workdir = str(tmp_path / "copy")
  shutil.copytree(finished_workdir, workdir)
  record_dir = os.path.join(workdir, "checkpoints", "12", "record")
  for name in os.listdir(record_dir):
    if name != "commit_success.txt":
      with open(os.path.join(record_dir, name), "w") as f:
        f.write("{not json")
  code, err = run_main(capsys, "--config", f"{SFT}:runlocal", "--workdir", workdir)
  assert code == 2 and "checkpoints/12" in err and "unreadable" in err


def test_jsonl_job_trains_and_scores_by_exact_match(tmp_path, capsys):
  rows = [{"question": f"{a}+{a}", "answer": str(2 * a), "rationale": f"{a} twice"} for a in range(40)]
  train_file, test_file = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
  train_file.write_text("".join(json.dumps(r) + "\n" for r in rows[:32]))
  test_file.write_text("".join(json.dumps(r) + "\n" for r in rows[32:]))
  workdir = tmp_path / "w"
  code, err = run_main(capsys, "--config", f"{JSONL}:runlocal,train={train_file},test={test_file}",
                       "--workdir", str(workdir))
  assert code == 0, err
  with open(workdir / "summary.json") as f:
    summary = json.load(f)
  assert summary["eval/num_examples"] == 8 and "eval/step_accuracy" not in summary


def test_a_run_stopped_by_a_non_finite_step_exits_1_with_its_good_checkpoint(tmp_path, capsys):
  """lr 1e30 without clipping: the loop names the term and stops; the command says so with its exit status."""
  workdir = tmp_path / "w"
  code, err = run_main(capsys, "--config", f"{SFT}:runlocal", "--config.optim.lr=1e30", "--config.optim.clip_norm=0",
                       "--config.train.eval_every=0", "--workdir", str(workdir))
  assert code == 1 and "non-finite" in err and "exit status 1" in err
  with open(workdir / "summary.json") as f:
    summary = json.load(f)
  assert summary["failed"] is True and summary["finished"] is False
  assert os.listdir(workdir / "checkpoints") == [str(summary["step"])]


def test_another_trainer_on_a_runs_workdir_is_refused_before_work(sft_workdir, capsys):
  """A GRPO config on a finished SFT run's workdir would restore its checkpoints and train nothing."""
  before = tree_digest(sft_workdir)
  grpo = os.path.join(ROOT, "configs", "grpo.py")
  code, err = run_main(capsys, "--config", f"{grpo}:runlocal", "--workdir", sft_workdir)
  assert code == 2 and err.count("\n") == 1
  assert "holds a 'sft' run" in err and "trainer is 'grpo'" in err and f"--config.init_checkpoint={sft_workdir}" in err
  assert tree_digest(sft_workdir) == before


def test_reward_weights_that_pay_for_wrong_answers_are_refused_before_work(tmp_path, capsys):
  # The old calibration reward at correctness's weight: expected reward falls with accuracy below p = 0.25.
  grpo_config = os.path.join(ROOT, "configs", "grpo.py")
  code, err = run_main(capsys, "--config", f"{grpo_config}:runlocal", "--config.rl.rewards=correctness,calibration_brier",
                       "--config.rl.reward_weights=1,1", "--workdir", str(tmp_path / "w"))
  assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
  assert "correctness=1, calibration_brier=1" in err and "[0, 0.25]" in err and "rl.reward_weights=2,1" in err
  assert not (tmp_path / "w").exists()
