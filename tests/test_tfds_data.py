"""TFDS data: python -m rr.data.prepare writes array_record, load_inputs and rr.eval read it, without TensorFlow."""

import hashlib
import json
import os
import sys

import pytest

from rr.config import apply_overrides, base_config
from rr.data import DataError, load_examples
from rr.data.prepare import main as prepare_main
from rr.eval.__main__ import main as eval_main
from rr.data.inputs import load_inputs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

GSM8K = [{"question": "A has 3 and B twice as many. Total?", "answer": "B has 3*2 = <<3*2=6>>6.\n3+6 = 9\n#### 9"},
         {"question": "Big?", "answer": "#### 1,234"}]
MATH = [{"problem": "1/2+1/4?", "solution": "$\\boxed{\\frac34}$", "level": "Level 4"},
        {"problem": "x+1=3?", "solution": "$x=\\boxed{2}$", "level": "Level 1"}]
CHOICE = [{"question": "1+1?", "choices": ["2", "3"], "answer": 0},
          {"question": "2+1?", "choices": ["2", "3", "4"], "answer": 1},
          {"question": "3+1?", "choices": ["4", "5", "6", "7"], "answer": 0, "explanation": "3+1=4"},
          {"question": "1+3?", "choices": ["3", "4", "5", "6"], "answer": 1}]


def write_jsonl(path, records):
  path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
  return str(path)


def prepare(capsys, *argv):
  code = prepare_main([str(a) for a in argv])
  return code, capsys.readouterr().err


def tfds_config(name, data_dir, format, **data):
  config = base_config()
  apply_overrides(config, [("data.source", "tfds"), ("data.format", format), ("data.tfds_name", name),
                           ("data.tfds_dir", str(data_dir))] + [(f"data.{k}", v) for k, v in data.items()])
  return config


def tree_digest(path):
  digest = hashlib.sha256()
  for folder, _, files in sorted(os.walk(path)):
    for name in sorted(files):
      digest.update(os.path.join(folder, name).encode())
      with open(os.path.join(folder, name), "rb") as f:
        digest.update(f.read())
  return digest.hexdigest()


@pytest.mark.parametrize("format, records", [("gsm8k", GSM8K), ("math", MATH), ("choice", CHOICE)])
def test_prepare_then_load_inputs_equals_reading_the_files(tmp_path, capsys, format, records):
  train = write_jsonl(tmp_path / "train.jsonl", records)
  test = write_jsonl(tmp_path / "test.jsonl", records[::-1])
  code, err = prepare(capsys, "--format", format, "--train", train, "--test", test, "--name", f"my_{format}",
                      "--data-dir", tmp_path / "tfds")
  assert code == 0, err
  assert f"--config.data.tfds_name=my_{format}" in err
  files = os.listdir(tmp_path / "tfds" / f"my_{format}" / "1.0.0")
  assert any(".array_record" in f for f in files) and not os.path.exists(tmp_path / "tfds" / "downloads")
  inputs = load_inputs(tfds_config(f"my_{format}", tmp_path / "tfds", format))
  assert inputs.train == load_examples("jsonl", format, train)  # order, meta and difficulty survive
  assert inputs.test == load_examples("jsonl", format, test)
  assert inputs.train != inputs.test
  assert "tensorflow" not in sys.modules  # read (and written) without TensorFlow


def test_prepare_refuses_to_overwrite_and_checks_input_before_writing(tmp_path, capsys):
  train = write_jsonl(tmp_path / "train.jsonl", GSM8K)
  data_dir = tmp_path / "tfds"
  assert prepare(capsys, "--format", "gsm8k", "--train", train, "--name", "g", "--data-dir", data_dir)[0] == 0
  before = tree_digest(data_dir)
  code, err = prepare(capsys, "--format", "gsm8k", "--train", train, "--name", "g", "--data-dir", data_dir)
  assert code == 2 and "'g' already exists" in err and "never overwrites" in err and err.count("\n") == 1
  assert tree_digest(data_dir) == before

  bad = write_jsonl(tmp_path / "bad.jsonl", [GSM8K[0], {"question": "q", "answer": "no marker"}])
  code, err = prepare(capsys, "--format", "gsm8k", "--train", train, "--test", bad, "--name", "h",
                      "--data-dir", data_dir)
  assert code == 2 and f"{bad}, line 2: field 'answer' has no '####'" in err
  assert not os.path.exists(data_dir / "h")
  for argv, named in [(["--format", "gsm8k", "--train", train, "--name", "Bad-Name", "--data-dir", data_dir],
                       "'Bad-Name' is not a TFDS name"),
                      (["--format", "gsm8k", "--train", tmp_path / "nope.jsonl", "--name", "n", "--data-dir",
                        data_dir], "--train"),
                      (["--format", "mmlu", "--train", train, "--name", "n", "--data-dir", data_dir], "--format"),
                      (["--format", "gsm8k", "--train", train, "--data-dir", data_dir], "--name is required")]:
    code, err = prepare(capsys, *argv)
    assert code == 2 and named in err, err
  assert sorted(os.listdir(data_dir)) == ["g"]


def test_missing_dataset_split_or_wrong_format_is_a_data_error(tmp_path, capsys):
  train = write_jsonl(tmp_path / "train.jsonl", MATH)
  assert prepare(capsys, "--format", "math", "--train", train, "--name", "m", "--data-dir", tmp_path)[0] == 0
  with pytest.raises(DataError, match="TFDS dataset 'nothere' not found.*python -m rr.data.prepare.*--name nothere"):
    load_inputs(tfds_config("nothere", tmp_path, "math"))
  with pytest.raises(DataError, match="'m' .* has no split 'test' \\(it has: train\\).*test_split"):
    load_inputs(tfds_config("m", tmp_path, "math"))
  assert len(load_inputs(tfds_config("m", tmp_path, "math", test_split="")).train) == 2
  with pytest.raises(DataError, match="holds 'math' examples, but config.data.format='gsm8k'.*format=math"):
    load_inputs(tfds_config("m", tmp_path, "gsm8k", test_split=""))


def test_eval_cli_on_tfds_choice_data_reports_choice_confusion(sft_workdir, tmp_path, capsys):
  data = write_jsonl(tmp_path / "choice.jsonl", CHOICE)
  assert prepare(capsys, "--format", "choice", "--train", data, "--test", data, "--name", "mc",
                 "--data-dir", tmp_path / "tfds")[0] == 0
  out = tmp_path / "eval"
  config = os.path.join(ROOT, "configs", "sft.py") + ":runlocal"
  code = eval_main(["--checkpoint", sft_workdir, "--config", config, "--config.data.source=tfds",
                    "--config.data.format=choice", "--config.data.tfds_name=mc",
                    f"--config.data.tfds_dir={tmp_path / 'tfds'}", "--config.eval.max_new_tokens=8",
                    "--samples", "2", "--k", "1,2", "--out", str(out)])
  assert code == 0, capsys.readouterr().err
  with open(out / "eval.json") as f:
    results = json.load(f)
  assert results["num_examples"] == 4 and "tfds mc:test" in results["task"]
  assert "step_accuracy" not in results and "cot_pass@2" not in results  # choice data has no step checker
  confusion = results["choice_confusion"]
  assert list(confusion["confusion"]) == ["A", "B", "C", "D"]
  assert list(confusion["confusion"]["A"]) == ["A", "B", "C", "D", "unparsed"]
  per_gold = {gold: sum(row.values()) for gold, row in confusion["confusion"].items()}
  assert per_gold == {"A": 2, "B": 2, "C": 0, "D": 0}  # gold letters of CHOICE: A, B, A, B
  assert confusion["accuracy"] == results["accuracy"]  # the verifier and the matrix read answers alike
  with open(out / "completions.jsonl") as f:
    greedy = [row for row in map(json.loads, f) if row["kind"] == "greedy"]
  assert [row["target"] for row in greedy] == ["A", "B", "A", "B"] and greedy[2]["question"].endswith("D. 7")
  report = (out / "report.md").read_text()
  assert "## Multiple choice: chosen against gold" in report
  assert "| gold / chosen | A | B | C | D | unparsed |" in report
