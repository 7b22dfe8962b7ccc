"""`python -m rr.eval`: a real checkpoint end to end, refusals before any work, and metrics checked by hand."""

import json
import os

import numpy as np
import pytest

from rr.checkpoint import Checkpoints
from rr.data import format_completion
from rr.eval import report
from rr.eval.__main__ import main
from rr.eval.run import assemble, score
from rr.sampler import Sampler
from rr.tasks import get_task

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs", "sft.py") + ":runlocal"


@pytest.fixture(scope="module")
def evaluated(sft_workdir):
  """One CLI run with eval.batch_size 3, recording the prompt batches the Sampler sees."""
  calls = []
  real_call = Sampler.__call__

  def spy(self, params, prompts, **kwargs):
    calls.append((len(prompts), kwargs["num_samples"]))
    return real_call(self, params, prompts, **kwargs)

  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(Sampler, "__call__", spy)
    code = main(["--checkpoint", sft_workdir, "--config", CONFIG, "--config.eval.batch_size=3", "--samples", "4",
                 "--k", "1,2,4", "--num-examples", "8"])
  return code, os.path.join(sft_workdir, "eval"), calls


def test_cli_writes_every_metric_report_and_plot(evaluated, sft_workdir):
  code, out, calls = evaluated
  assert code == 0
  with open(os.path.join(out, "eval.json")) as f:
    results = json.load(f)
  for key in ("accuracy", "step_accuracy", "pass@1", "pass@2", "pass@4", "maj@4", "cot_pass@4", "ece", "brier",
              "unparsed", "accuracy_by_difficulty", "length", "num_examples", "num_samples", "checkpoint", "step"):
    assert key in results, key
  assert results["num_examples"] == 8 and results["num_samples"] == 4
  assert results["step"] == 12 and results["checkpoint"] == os.path.join(sft_workdir, "checkpoints")
  passes = [results[f"pass@{k}"] for k in (1, 2, 4)]
  assert passes == sorted(passes)
  for key in ("accuracy", "pass@1", "pass@4", "maj@1", "maj@4", "cot_pass@1", "cot_pass@4"):
    assert 0.0 <= results[key] <= 1.0, key
  assert results["cot_pass@4"] <= results["pass@4"]
  assert set(results["length"]) == {"mean", "min", "p50", "p90", "max"}
  assert results["ece"] is None and results["brier"] is None  # this untrained model states no confidence
  assert results["confidence_coverage"]["stated"] == 0 and results["confidence_coverage"]["total"] == 8 * (1 + 4)
  for name in ("report.md", "pass_at_k.png", "lengths.png", "completions.jsonl"):
    assert os.path.getsize(os.path.join(out, name)) > 0, name
  assert not os.path.exists(os.path.join(out, "reliability.png"))
  text = open(os.path.join(out, "report.md")).read()
  assert "| 4 |" in text and "pass@4" in text and "Accuracy by difficulty" in text
  with open(os.path.join(out, "completions.jsonl")) as f:
    assert len(f.readlines()) == 8 * (1 + 4)
  # Batched: 8 questions in prompt batches of config.eval.batch_size=3, greedy then 4 samples each.
  assert calls == [(3, 1), (3, 1), (2, 1), (3, 4), (3, 4), (2, 4)]


def test_second_run_to_the_same_out_is_refused_and_leaves_eval_json_alone(evaluated, sft_workdir, capsys):
  _, out, _ = evaluated
  path = os.path.join(out, "eval.json")
  before, mtime = open(path).read(), os.path.getmtime(path)
  capsys.readouterr()
  code = main(["--checkpoint", sft_workdir, "--config", CONFIG, "--samples", "4", "--k", "1,2,4",
               "--num-examples", "8"])
  err = capsys.readouterr().err
  assert code == 2
  assert "--out" in err and "eval.json" in err and "never overwrites" in err
  assert len(err.strip().splitlines()) == 1
  assert open(path).read() == before and os.path.getmtime(path) == mtime


@pytest.mark.parametrize("flags, named", [
    (["--k", "1,8", "--samples", "4"], "--samples"),
    (["--k", "1,x"], "--k"),
    (["--k", "0,2"], "--k"),
    (["--k", ""], "--k"),
    (["--samples", "four"], "--samples"),
    (["--temperature", "0"], "--temperature"),
])
def test_bad_flags_exit_2_naming_the_flag(sft_workdir, tmp_path, capsys, flags, named):
  code = main(["--checkpoint", sft_workdir, "--config", CONFIG, "--out", str(tmp_path / "e"), *flags])
  err = capsys.readouterr().err
  assert code == 2 and err.startswith("rr: error:") and named in err, err
  assert not (tmp_path / "e").exists()


def test_bad_checkpoint_dirs_exit_2_before_work(tmp_path, capsys):
  missing = tmp_path / "nope"
  assert main(["--checkpoint", str(missing), "--config", CONFIG]) == 2
  err = capsys.readouterr().err
  assert "--checkpoint" in err and "does not exist" in err and not missing.exists()

  empty = tmp_path / "empty"
  empty.mkdir()
  assert main(["--checkpoint", str(empty), "--config", CONFIG]) == 2
  assert "holds no rr checkpoint" in capsys.readouterr().err
  assert os.listdir(empty) == []

  hf = tmp_path / "hf"
  hf.mkdir()
  (hf / "config.json").write_text("{}")
  assert main(["--checkpoint", str(hf), "--config", CONFIG]) == 2
  err = capsys.readouterr().err
  assert "model_type=None is not supported" in err and str(hf) in err
  assert len(err.strip().splitlines()) == 1


def test_vocab_mismatch_between_checkpoint_and_tokenizer_is_named(sft_workdir, tmp_path, capsys, monkeypatch):
  real = Checkpoints.read_record
  monkeypatch.setattr(Checkpoints, "read_record", lambda self, step: {**real(self, step), "vocab_size": 7})
  code = main(["--checkpoint", sft_workdir, "--config", CONFIG, "--out", str(tmp_path / "e")])
  err = capsys.readouterr().err
  assert code == 2 and "vocab_size=7" in err and "--config" in err
  assert not (tmp_path / "e").exists()


def test_metrics_by_hand_on_planted_completions(tmp_path):
  rng = np.random.default_rng(3)
  addition = get_task("addition")
  e1, e2, e3 = addition.generate(rng, 3), addition.generate(rng, 3), addition.generate(rng, 2)
  lines = e2.rationale.split("\n")
  a, rest = lines[0].split("+", 1)
  lines[0] = f"{(int(a) + 1) % 10}+{rest}"  # a wrong digit of the first operand in column 0
  bad_step = "<think>" + "\n".join(lines) + "</think>" + e2.answer  # right answer, wrong step
  assert addition.verify(e2.answer, e2) and not all(addition.check_steps("\n".join(lines), e2))
  wrong = "<think>" + e1.rationale + "</think>" + str(int(e1.answer) + 1)
  unclosed = "<think>" + e3.rationale  # ran out of tokens while thinking
  empty = "<think>" + e3.rationale + "</think>   "  # no answer after the rationale

  examples = [e1, e2, e3]
  greedy = [score(e1, format_completion(e1) + "\nconfidence: 0.8", 20), score(e2, bad_step, 22),
            score(e3, unclosed, 32)]
  sampled = [[score(e1, format_completion(e1), 18), score(e1, wrong + "\nconfidence: 0.4", 19)],
             [score(e2, bad_step, 21), score(e2, unclosed.replace(e3.rationale, e2.rationale), 32)],
             [score(e3, unclosed, 32), score(e3, empty, 16)]]
  assert greedy[0].correct and greedy[0].steps_ok and greedy[0].confidence == 0.8
  assert greedy[1].correct and greedy[1].steps_ok is False
  assert greedy[2].answer is None and not greedy[2].correct and sampled[2][1].answer is None

  r = assemble(examples, greedy, sampled, ks=[1, 2], ece_bins=10)
  assert r["accuracy"] == pytest.approx(2 / 3)
  assert r["step_accuracy"] == pytest.approx(1 / 3)
  assert r["unparsed"] == 1 and r["unparsed_sampled"] == 3
  # Right samples per question: 1, 1, 0 of 2; with every step right too: 1, 0, 0.
  assert r["pass@1"] == pytest.approx((0.5 + 0.5 + 0) / 3)
  assert r["pass@2"] == pytest.approx(2 / 3)
  assert r["cot_pass@1"] == pytest.approx(0.5 / 3)
  assert r["cot_pass@2"] == pytest.approx(1 / 3)
  # Votes: e1 ties right/wrong -> first (right); e2 right beats unparsed; e3 all unparsed -> wrong.
  assert r["maj@1"] == pytest.approx(2 / 3) and r["maj@2"] == pytest.approx(2 / 3)
  assert r["accuracy_by_difficulty"] == {"2": {"count": 1, "accuracy": 0.0}, "3": {"count": 2, "accuracy": 1.0}}
  assert r["length"]["max"] == 32 and r["length"]["min"] == 20
  # Stated confidences: 0.8 on a right answer, 0.4 on a wrong one.
  assert r["brier"] == pytest.approx((0.2 ** 2 + 0.4 ** 2) / 2)
  assert r["ece"] == pytest.approx(0.5 * 0.2 + 0.5 * 0.4)
  assert r["calibration"]["count"] == 2
  # ...over 2 of the 9 completions (3 greedy, 6 sampled): 1 of the 4 right ones and 1 of the 5 wrong ones.
  assert r["confidence_coverage"] == {"stated": 2, "total": 9, "coverage": pytest.approx(2 / 9), "stated_right": 1,
                                      "right": 4, "stated_wrong": 1, "wrong": 5}

  paths = report.write_all(str(tmp_path / "out"), r, examples, greedy, sampled)
  assert os.path.getsize(paths["reliability.png"]) > 0
  markdown = open(paths["report.md"]).read()
  assert "ECE 0.300" in markdown
  assert "| ECE (2 of 9) | 0.300 |" in markdown and "| Brier (2 of 9) | 0.100 |" in markdown
  assert "| confidence coverage (completions that state one) | 0.222 |" in markdown
  assert "2 of 9 completions (greedy and sampled) state a confidence; 1 of 4 right answers, 1 of 5 wrong" in markdown
  written = json.load(open(paths["eval.json"]))
  assert written["brier"] == pytest.approx(0.1)
  assert written["confidence_coverage"]["stated"] == 2 and written["confidence_coverage"]["total"] == 9


def test_report_without_stated_confidences_gives_the_coverage(tmp_path):
  e1 = get_task("addition").generate(np.random.default_rng(4), 2)
  greedy, sampled = [score(e1, format_completion(e1), 10)], [[score(e1, format_completion(e1), 10)]]
  r = assemble([e1], greedy, sampled, ks=[1])
  assert r["ece"] is None and r["brier"] is None
  assert r["confidence_coverage"] == {"stated": 0, "total": 2, "coverage": 0.0, "stated_right": 0, "right": 2,
                                      "stated_wrong": 0, "wrong": 0}
  markdown = open(report.write_all(str(tmp_path / "out"), r, [e1], greedy, sampled)["report.md"]).read()
  assert "No completion states a confidence (0 of 2;" in markdown and "| ECE (0 of 2) | - |" in markdown
