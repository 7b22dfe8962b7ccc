"""experiments/quickstart.ipynb runs top to bottom on CPU with tiny settings: it trains, plots, samples checked
rationales and evaluates, through the same library calls as the command line."""

import json
import os

from notebook_runner import has_image, outputs_text, run_notebook

TINY = {"SMOKE": True, "RATIONALES": 64, "SFT_STEPS": 8, "GRPO_STEPS": 2, "EVAL_QUESTIONS": 4, "SAMPLES": 2}


def test_the_quickstart_notebook_trains_reinforces_samples_and_evaluates(tmp_path):
  workdir = str(tmp_path / "runs")
  notebook = run_notebook("quickstart.ipynb", {**TINY, "WORKDIR": workdir}, cwd=str(tmp_path))
  text = outputs_text(notebook)
  with open(os.path.join(workdir, "sft", "summary.json")) as f:
    sft = json.load(f)
  with open(os.path.join(workdir, "grpo", "summary.json")) as f:
    grpo = json.load(f)
  assert sft["finished"] and sft["step"] == TINY["SFT_STEPS"]
  assert grpo["finished"] and grpo["step"] == TINY["GRPO_STEPS"]
  assert f"held-out accuracy after SFT: {sft['eval/accuracy']:.3f}" in text
  # Six sampled completions, each printed with the verdicts of the answer and of its rationale's steps.
  assert text.count(" steps right, whole right chain: ") == 6
  for stage in ("sft", "grpo"):  # rr.eval wrote its report where python -m rr.eval writes it
    with open(os.path.join(workdir, stage, "eval", "eval.json")) as f:
      report = json.load(f)
    assert report["num_examples"] == TINY["EVAL_QUESTIONS"] and report["num_samples"] == TINY["SAMPLES"]
    assert f"{report['pass@1']:.3f}" in text
  assert has_image(notebook)  # the curves and the pass@k plot were drawn
