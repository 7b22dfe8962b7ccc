"""The Python API the notebooks and docs/api.md use: reachable after `import rr`, and doing what the command line
does (rr.eval.evaluate is python -m rr.eval; rr.eval.load samples as the evaluation does). Evaluation-only data:
a test file alone evaluates, and a run that would train on it is refused before any work."""

import json
import os
import subprocess
import sys

import pytest

import rr
from rr import tasks
from rr.config import load_config
from rr.data import DataError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JSONL = os.path.join(ROOT, "configs", "sft_jsonl.py")


def test_import_rr_reaches_every_documented_entry_point():
  """In a fresh interpreter: `import rr` alone, then each name docs/api.md documents (parts load on first use)."""
  names = ["rr.train.run", "rr.eval.evaluate", "rr.eval.load", "rr.models.from_hf", "rr.models.to_hf",
           "rr.models.forward", "rr.models.init_params", "rr.sampler.Sampler", "rr.rewards.register",
           "rr.config.load_config", "rr.tasks.get_task"]
  code = "import rr\n" + "".join(f"assert callable({name}), {name!r}\n" for name in names) + "print('ok')"
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
  assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
  with pytest.raises(AttributeError, match="no attribute 'trian'"):
    rr.trian  # pylint: disable=pointless-statement


def test_evaluate_returns_its_eval_json_and_load_completes_as_the_evaluation_samples(sft_workdir, tmp_path):
  out = str(tmp_path / "ev")
  results = rr.eval.evaluate(sft_workdir, k=(1, 2), samples=2, num_examples=4, out=out,
                             overrides={"eval.max_new_tokens": 24})
  with open(os.path.join(out, "eval.json")) as f:
    written = json.load(f)
  assert written["num_examples"] == 4 and written["max_new_tokens"] == 24
  for key in ("accuracy", "pass@1", "pass@2", "maj@2", "cot_pass@2", "num_samples"):
    assert written[key] == pytest.approx(results[key]), key
  with open(os.path.join(out, "completions.jsonl")) as f:
    greedy = [row["text"] for row in map(json.loads, f) if row["kind"] == "greedy"]
  with pytest.raises(rr.eval.EvalError, match="already"):  # never over an existing report
    rr.eval.evaluate(sft_workdir, k=(1,), samples=1, num_examples=4, out=out)

  policy = rr.eval.load(sft_workdir, num_examples=4, overrides={"eval.max_new_tokens": 24})
  assert len(policy.examples) == 4
  texts = policy.complete(policy.examples)  # greedy: the evaluation's greedy completions, text for text
  assert [t[0] for t in texts] == greedy
  assert [policy.score(e, t[0]).correct for e, t in zip(policy.examples, texts)] == \
      [row for row in _greedy_verdicts(out)]
  sampled = policy.complete([policy.examples[0].question], num_samples=3, temperature=1.0)
  assert len(sampled) == 1 and len(sampled[0]) == 3


def _greedy_verdicts(out):
  with open(os.path.join(out, "completions.jsonl")) as f:
    return [row["correct"] for row in map(json.loads, f) if row["kind"] == "greedy"]


def test_a_test_file_alone_evaluates_and_a_run_that_trains_on_it_is_refused(sft_workdir, tmp_path):
  """MATH-500 is one test.jsonl: the configs and rr.eval take it without a train file."""
  test_file = tmp_path / "test.jsonl"
  examples = tasks.make_split(tasks.get_task("addition"), "test", 3, 3, 0)
  test_file.write_text("".join(json.dumps({"question": e.question, "answer": e.answer}) + "\n" for e in examples))
  results = rr.eval.evaluate(sft_workdir, f"{JSONL}:test={test_file}", k=(1,), samples=1, out=str(tmp_path / "ev"),
                             overrides={"eval.max_new_tokens": 24})
  assert results["num_examples"] == 3 and results["task"] == str(test_file)

  workdir = tmp_path / "train"
  with pytest.raises(DataError, match="config.data.train_path is not set, and this run trains"):
    rr.train.run(load_config(f"{JSONL}:runlocal,test={test_file}"), str(workdir))
  assert not (workdir / "checkpoints").exists()
