"""Rewards for the rationale itself (issue 15): each method against its baseline, from one SFT start, at one budget.

`python -m rr.experiment experiments/rationale_rewards.py --dir /tmp/rr_rationale_rewards` (`:runlocal` is the
seconds-long variant the test suite runs), then `python experiments/rationale_rewards.py --report DIR` for the
tables and plots of each method's own measure (by difficulty, the teacher's reward, step reward against accuracy).

Shared runs (once, in order):
  sft                   the `tiny` preset after SFT_STEPS of configs/sft.py:mixed (addition of 1-6 digits), as issue
                        14's experiment: right on most short questions and few long ones. Every RL row starts here
                        unless it says otherwise, and it is the frozen student of RLT.
  sft_dropout           the same SFT with TON's thought dropout (p = 0.5): the start of the when-to-think rows.
  confidence_data       SaySelf's data: the sft model samples K_CONFIDENCE answers per train question; the majority
                        answer's record is kept with "confidence: c", c = the share of the K samples that agree.
  sft_confidence        sft, then CONFIDENCE_STEPS of SFT on those records: the start of the calibration rows.
  teacher_sft           sft, then TEACHER_STEPS of SFT that reads the gold answer first (data.prompt_context).
  teacher_rl            teacher_sft, then RL with RLT's understanding reward (the frozen student: sft).
  explanations_before / explanations_after
                        one explanation per train question sampled from teacher_sft / teacher_rl (reading the answer),
                        kept when its final answer is right: the data the RLT student rows distil.
  negatives             the sft model's own wrong samples (teach filter "wrong"): the rejected side of DPO.
  choice_data           the mixed-addition splits written as 4-way multiple-choice files (trainer "choice_files"
                        below), then sft_choice (sft, then SFT on the choice file), confidence_choice and
                        sft_choice_confidence: the SaySelf data and SFT again, on multiple choice.

Rows (seeds 0-2; RL rows stop at BUDGET_TOKENS sampled completion tokens, student rows after STUDENT_STEPS steps of
STUDENT_BATCH rows):
  grpo, gated, ungated, length, info_gain                 from sft
  grpo_dropout, think_skip                                from sft_dropout
  grpo_confidence, calibration                            from sft_confidence
  grpo_choice, calibration_choice                         from sft_choice_confidence, on the multiple-choice file
  student_program, student_before, student_after, dpo     from sft: SFT on the program rationales, on the untrained
                                                          and the trained teacher's explanations; DPO on (program
                                                          rationale, own wrong sample) pairs
"""

import json
import os
import runpy
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
if __name__ == "__main__":  # the --report command, run as a script: rr from this checkout
  sys.path.insert(0, os.path.dirname(HERE))

from rr.config import parse_arg, use_data_files
from rr.train import TRAINERS
from rr.experiment import (WALL_SECONDS, Column, Experiment, Method, PassAtK, Shared, current_evaluation,
                           curve, pass_at_k_column, summary_column)
from rr.experiment.results import save_plot

CONFIGS = os.path.join(os.path.dirname(HERE), "configs")
SFT_STEPS = 300  # issue 14's start (README, "Guided RL and curricula, measured")
BUDGET_TOKENS = 150_000  # completion tokens sampled per RL row
TEACHER_BUDGET_TOKENS = 400_000  # the RLT teacher's RL run (shared, so once): issue 14's budget
STEP_BOUND = 200  # train.steps of an RL row: above what any needs to spend the budget
TEACH_QUESTIONS = 2000  # train questions the teacher-data runs sample, and the student rows train on
K_CONFIDENCE = 8  # SaySelf: samples per question whose agreement is the stated confidence
CONFIDENCE_STEPS = 150
CONFIDENCE_TOKENS = 24  # room for the answer's "\nconfidence: 0.75" line (17 char tokens)
TEACHER_STEPS = 150
STUDENT_STEPS = 100
STUDENT_BATCH = 64
CHOICE_STEPS = 150  # SFT on the multiple-choice file before its confidence data
CHOICE_TRAIN, CHOICE_TEST = 2000, 300  # questions in the multiple-choice files (4 choices, rr.data.choice_file)
EASY = (1, 2)  # digits: the questions think_skip pays to answer without a rationale (rl.easy_difficulty = 2)
HARD = (5, 6)

LABELS = {
    "grpo": "plain GRPO (correctness)",
    "gated": "gated process reward (Posterior-GRPO)",
    "ungated": "ungated process reward (sum)",
    "length": "cosine length + repetition penalty",
    "info_gain": "information gain (RLP, no verifier)",
    "grpo_dropout": "plain GRPO, thought-dropout start",
    "think_skip": "think_skip bonus, thought-dropout start",
    "grpo_confidence": "plain GRPO, confidence-SFT start",
    "calibration": "calibration reward (RLCR), confidence-SFT start",
    "student_program": "SFT on program rationales",
    "student_before": "SFT on the untrained teacher's explanations",
    "student_after": "SFT on the RLT teacher's explanations",
    "dpo": "DPO: program rationale over own wrong sample",
    "grpo_choice": "plain GRPO, multiple choice, confidence-SFT start",
    "calibration_choice": "calibration reward (RLCR), multiple choice, confidence-SFT start",
}


def load_config(name: str, arg: str = ""):
  return runpy.run_path(os.path.join(CONFIGS, name))["get_config"](arg or None)


def eval_value(*keys):
  """A number from the run's current rr.eval evaluation (eval.json), by key path; None where absent."""

  def value(summary: dict, run_dir: str):
    found = current_evaluation(run_dir) or {}
    for key in keys:
      found = found.get(key) if isinstance(found, dict) else None
    return found if isinstance(found, (int, float)) else None

  return value


def levels_mean(field: str, levels):
  """The mean over these difficulty levels of eval.json's by_difficulty[level][field], weighted by count."""

  def value(summary: dict, run_dir: str):
    rows = [((current_evaluation(run_dir) or {}).get("by_difficulty") or {}).get(str(d)) for d in levels]
    rows = [r for r in rows if r and r.get(field) is not None]
    if not rows:
      return None
    return float(sum(r[field] * r["count"] for r in rows) / sum(r["count"] for r in rows))

  return value


def late_mean(key: str, last: int = 10):
  """The mean of metrics.jsonl's `key` over the run's last `last` logged steps (what the policy ended earning)."""

  def value(summary: dict, run_dir: str):
    values = [v for _, v in curve(run_dir, key)][-last:]
    return float(np.mean(values)) if values else None

  return value


CHOICE_DATA = "choice_data"  # the shared run that writes the multiple-choice files


@TRAINERS.register("choice_files")
def write_choice_files(config, workdir: str, should_stop=None) -> dict:
  """A shared run of the grid that writes its data: config.data.train_path and test_path, the mixed-addition
  questions of the task's train and test splits as 4-way multiple choice (rr.data.choice_file: the gold letter at a
  seeded place, distractors one digit away), so calibration is measured on a multiple-choice file too. A file that
  exists is kept (rr never overwrites data), so a rerun changes nothing."""
  from rr.config import save_run_config
  from rr.data.choice_file import write_choice_file

  start = time.time()
  os.makedirs(workdir, exist_ok=True)
  for split, path, size in (("train", config.data.train_path, config.data.train_size),
                            ("test", config.data.test_path, config.data.test_size)):
    if not os.path.exists(path):
      write_choice_file(path, config.data.task, split, size, config.data.difficulty, config.data.seed,
                        difficulty_max=config.data.difficulty_max)
  save_run_config(config, workdir)
  summary = {"finished": True, "step": 0, "wall_seconds": time.time() - start}
  with open(os.path.join(workdir, "summary.json"), "w") as f:
    json.dump(summary, f)
  return summary


def task_questions(config) -> list[tuple[str, str]]:
  """rr.eval asks a run trained on the task written out as plain text (info_gain) the task's questions."""
  return [("data.format", "rationale")] if config.data.format == "text" else []


def get_experiment(arg=None):
  args = parse_arg(arg, runlocal=False)
  small = args.runlocal

  def sft_config(steps: int):
    c = load_config("sft.py", "mixed,runlocal" if small else "mixed")
    c.seed = 0
    c.data.seed = 0
    c.optim.lr = 2e-3
    c.train.steps = 30 if small else steps  # runlocal: enough for finished, parsed samples
    c.train.eval_every = 0
    c.train.checkpoint_every = c.train.steps
    return c

  def sft(paths):
    return sft_config(SFT_STEPS)

  def sft_dropout(paths):
    c = sft_config(SFT_STEPS)
    c.data.thought_dropout = 0.5
    return c

  def continued(paths, start: str, steps: int):
    """SFT from a shared checkpoint: a lower, constant learning rate after a short warm-up."""
    c = sft_config(steps)
    c.init_checkpoint = paths[start]
    c.optim.lr = 5e-4
    c.optim.min_lr_ratio = 1.0
    c.optim.warmup_steps = 1 if small else 10
    return c

  def teach(paths, teacher: str, filters: str, samples: int, context: str = "", confidence: bool = False):
    c = load_config("teach.py", f"teacher={paths[teacher]}" + (",runlocal" if small else ""))
    mixed = load_config("sft.py", "mixed")
    c.data.difficulty, c.data.difficulty_max = mixed.data.difficulty, mixed.data.difficulty_max
    c.data.max_len = mixed.data.max_len
    c.data.seed = 0
    c.data.train_size = 8 if small else TEACH_QUESTIONS
    c.data.prompt_context = context
    c.teach.samples = samples
    c.teach.filters = filters
    c.teach.max_per_question = 1
    c.teach.confidence = confidence
    c.teach.max_new_tokens = 16 if small else mixed.eval.max_new_tokens
    c.seed = 0
    return c

  def confidence_data(paths):
    return teach(paths, "sft", "consistent,dedup", 2 if small else K_CONFIDENCE, confidence=True)

  def with_confidence_line(c):
    """Lengths with room for the stated confidence after the answer."""
    c.data.max_len += CONFIDENCE_TOKENS
    c.eval.max_new_tokens += CONFIDENCE_TOKENS
    c.rl.max_new_tokens += CONFIDENCE_TOKENS
    return c

  def sft_confidence(paths):
    c = with_confidence_line(continued(paths, "sft", CONFIDENCE_STEPS))
    c.data.train_size = 8 if small else TEACH_QUESTIONS
    c.data.rationales_path = paths["confidence_data"]
    return c

  def teacher_sft(paths):
    c = continued(paths, "sft", TEACHER_STEPS)
    c.data.prompt_context = "answer"
    c.data.max_len += 8  # the answer (up to 7 digits) and its newline before the question
    return c

  def rl_config(method: str, start: str, seed: int, paths):
    c = load_config("rationale_rewards.py", f"method={method}" + (",runlocal" if small else ""))
    c.seed = seed  # the rollouts' randomness; the params start from the shared checkpoint
    c.data.seed = 0  # the SFT run's questions
    c.init_checkpoint = paths[start]
    c.rl.max_sampled_tokens = 160 if small else BUDGET_TOKENS
    c.train.steps = 2 if small else STEP_BOUND
    c.optim.min_lr_ratio = 1.0  # constant after warm-up: the budget, not train.steps, ends the run
    c.optim.warmup_steps = 1 if small else 10
    c.train.log_every = 1
    c.train.eval_every = 0  # the step-0 and final evaluations
    c.train.checkpoint_every = c.train.steps
    c.eval.num_examples = 16 if small else 500
    if method == "understanding":
      c.rl.understanding_student = paths["sft"]
    return c

  def teacher_rl(paths):
    c = rl_config("understanding", "teacher_sft", 0, paths)
    c.rl.max_sampled_tokens = 160 if small else TEACHER_BUDGET_TOKENS
    c.train.log_every = 1
    return c

  def explanations(teacher: str):  # runlocal: a seconds-trained teacher is rarely right, so any finished sample
    return lambda paths: teach(paths, teacher, "dedup" if small else "correct,dedup", 4 if small else 1,
                               context="answer")

  def rl_method(method: str, start: str):
    return lambda seed, paths: rl_config(method, start, seed, paths)

  def student(rationales: str = ""):
    def config(seed, paths):
      c = continued(paths, "sft", STUDENT_STEPS)
      c.seed = seed
      c.data.train_size = 8 if small else TEACH_QUESTIONS
      c.data.rationales_path = paths[rationales] if rationales else ""
      c.train.batch_size = 8 if small else STUDENT_BATCH
      c.eval.num_examples = 16 if small else 500
      return c
    return config

  def choice_data(paths):
    c = load_config("sft.py", "mixed")
    c.trainer = "choice_files"
    c.data.seed = 0
    c.data.train_size, c.data.test_size = (8, 4) if small else (CHOICE_TRAIN, CHOICE_TEST)
    c.eval.num_examples = c.data.test_size
    directory = os.path.join(os.path.dirname(paths["sft"]), CHOICE_DATA)
    c.data.train_path, c.data.test_path = (os.path.join(directory, f"{s}.jsonl") for s in ("train", "test"))
    return c

  def on_choice(c, paths):
    """The run reads the multiple-choice files (the choice_data run's) instead of the generated task."""
    written = choice_data(paths)
    use_data_files(c, written.data.train_path, written.data.test_path, "choice")
    c.data.max_len = 128  # the four choices, one line each, after the question
    return c

  def sft_choice(paths):
    return on_choice(continued(paths, "sft", CHOICE_STEPS), paths)

  def confidence_choice(paths):
    c = teach(paths, "sft_choice", "consistent,dedup", 2 if small else K_CONFIDENCE, confidence=True)
    return on_choice(c, paths)

  def sft_choice_confidence(paths):
    c = with_confidence_line(on_choice(continued(paths, "sft_choice", CONFIDENCE_STEPS), paths))
    c.data.rationales_path = paths["confidence_choice"]
    return c

  def choice_row(method: str):
    return lambda seed, paths: with_confidence_line(on_choice(rl_config(method, "sft_choice_confidence", seed, paths),
                                                              paths))

  def dpo(seed, paths):
    c = student()(seed, paths)
    c.trainer = "dpo"
    c.dpo.negatives = paths["negatives"]
    c.dpo.beta, c.dpo.nll_weight = 0.1, 1.0
    c.optim.lr = 1e-4  # configs/dpo.py's: DPO's log-ratio margins move faster than the NLL
    return c

  rl_rows = [("grpo", "sft"), ("gated", "sft"), ("ungated", "sft"), ("length", "sft"), ("info_gain", "sft"),
             ("grpo_dropout", "sft_dropout"), ("think_skip", "sft_dropout"),
             ("grpo_confidence", "sft_confidence"), ("calibration", "sft_confidence")]
  recipe = {"grpo_dropout": "grpo", "grpo_confidence": "grpo"}
  def rl_row(name: str, start: str):
    make = rl_method(recipe.get(name, name), start)
    return (lambda seed, paths: with_confidence_line(make(seed, paths))) if start == "sft_confidence" else make

  methods = [Method(name, rl_row(name, start), LABELS[name]) for name, start in rl_rows]
  methods += [Method("student_program", student(), LABELS["student_program"]),
              Method("student_before", student("explanations_before"), LABELS["student_before"]),
              Method("student_after", student("explanations_after"), LABELS["student_after"]),
              Method("dpo", dpo, LABELS["dpo"]),
              Method("grpo_choice", choice_row("grpo"), LABELS["grpo_choice"]),
              Method("calibration_choice", choice_row("calibration"), LABELS["calibration_choice"])]
  return Experiment(
      name="rationale_rewards_runlocal" if small else "rationale_rewards",
      seeds=(0,) if small else (0, 1, 2),
      methods=methods,
      shared=[Shared("sft", sft), Shared("sft_dropout", sft_dropout), Shared("confidence_data", confidence_data),
              Shared("sft_confidence", sft_confidence), Shared("teacher_sft", teacher_sft),
              Shared("teacher_rl", teacher_rl), Shared("explanations_before", explanations("teacher_sft")),
              Shared("explanations_after", explanations("teacher_rl")),
              Shared("negatives", lambda paths: teach(paths, "sft", "wrong,dedup", 4)),
              Shared(CHOICE_DATA, choice_data), Shared("sft_choice", sft_choice),
              Shared("confidence_choice", confidence_choice), Shared("sft_choice_confidence", sft_choice_confidence)],
      columns=[Column("held-out accuracy", eval_value("accuracy")), pass_at_k_column(8),
               Column("CoT-pass@8", eval_value("cot_pass@8")),
               Column("ECE", eval_value("ece")), Column("Brier", eval_value("brier")),
               Column("stated confidence", eval_value("confidence_coverage", "coverage")),
               Column("mean length", eval_value("length", "mean"), 1),
               Column("no thought, 1-2 digits", levels_mean("no_thought", EASY)),
               Column("accuracy, 5-6 digits", levels_mean("accuracy", HARD)),
               Column("step reward (last 10 steps)", late_mean("train/rewards/step_correctness/mean")),
               summary_column("eval/info_gain", "info gain (nats/token)"),
               summary_column("total/sampled_tokens", "sampled tokens", 0), WALL_SECONDS],
      # every row is asked the task's questions, also info_gain's, which trained on them written out as plain text
      pass_at_k=PassAtK(ks=(1, 8), num_examples=4 if small else 300, overrides=task_questions),
      curves=("train/rewards/correctness/mean", "train/rewards/step_correctness/mean"),
  )


# ------------------------------------------------------------------------------------------ the --report tables


REPORT = "rationale_rewards_report.md"
STEP_PLOT = "rationale_rewards_step_reward.png"
SEEDS = (0, 1, 2)


def spread(values) -> str:
  """mean ± sample std of the numbers among `values` (None where a run has none), with how many there are."""
  values = [float(v) for v in values if isinstance(v, (int, float)) and not np.isnan(v)]
  if not values:
    return "–"
  if len(values) == 1:
    return f"{values[0]:.3f}"
  return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"


def window(run_dir: str, key: str, first: bool, size: int = 10) -> float | None:
  """The mean of `key` over the run's first (or last) `size` logged steps."""
  values = [v for _, v in curve(run_dir, key)]
  values = values[:size] if first else values[-size:]
  return float(np.mean(values)) if values else None


def runs_of(directory: str, method: str, seeds=SEEDS) -> list[str]:
  return [os.path.join(directory, method, f"seed{s}") for s in seeds
          if os.path.isfile(os.path.join(directory, method, f"seed{s}", "summary.json"))]


def table(header: list[str], rows: list[list[str]]) -> list[str]:
  return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def by_difficulty_rows(directory: str, methods) -> list[list[str]]:
  """Per method and level: greedy accuracy, the share answered without a thought, the mean length (eval.json)."""
  rows = []
  for method in methods:
    evals = [current_evaluation(d) or {} for d in runs_of(directory, method)]
    levels = sorted({int(level) for e in evals for level in e.get("by_difficulty", {})})
    for level in levels:
      cells = [[(e.get("by_difficulty", {}).get(str(level)) or {}).get(k) for e in evals]
               for k in ("accuracy", "no_thought", "mean_length")]
      rows.append([LABELS.get(method, method), str(level)] + [spread(c) for c in cells])
  return rows


def step_reward_rows(directory: str, methods) -> list[list[str]]:
  """The correctness and step rewards the policy earned over its first and its last 10 steps, and the held-out
  accuracy and step accuracy at the end: reward hacking shows as the step reward rising while correctness falls."""
  rows = []
  for method in methods:
    dirs = runs_of(directory, method)
    cells = [spread([window(d, key, first) for d in dirs])
             for key in ("train/rewards/correctness/mean", "train/rewards/step_correctness/mean")
             for first in (True, False)]
    evals = [current_evaluation(d) or {} for d in dirs]
    rows.append([LABELS.get(method, method)] + cells + [spread([e.get("accuracy") for e in evals]),
                                                        spread([e.get("step_accuracy") for e in evals])])
  return rows


def plot_step_rewards(directory: str, out: str, methods=("grpo", "gated", "ungated")) -> str | None:
  """train/rewards/correctness/mean (solid) and step_correctness/mean (dashed) per step, the mean over seeds."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(6.4, 4.0))
  drawn = False
  for number, method in enumerate(methods):
    for key, style in (("train/rewards/correctness/mean", "-"), ("train/rewards/step_correctness/mean", "--")):
      curves = [dict(curve(d, key)) for d in runs_of(directory, method)]
      curves = [c for c in curves if c]
      if not curves:
        continue
      steps = sorted(set.intersection(*(set(c) for c in curves)))
      mean = [np.mean([c[s] for c in curves]) for s in steps]
      ax.plot(steps, mean, style, color=f"C{number}", label=f"{LABELS.get(method, method)}: {key.split('/')[2]}")
      drawn = True
  if not drawn:
    plt.close(fig)
    return None
  return save_plot(fig, ax, out, "RL step", "reward (mean over the step's rollouts)",
                   "correctness (solid) and step reward (dashed), mean of 3 seeds", legend_size=7, dpi=90)


def teacher_rows(directory: str) -> list[list[str]]:
  """RLT's teacher run: its reward and the reward's parts over its first and last 10 steps."""
  run = os.path.join(directory, "teacher_rl")
  rows = []
  for key in ("mean", "r_ss", "r_kl", "explanation_tokens", "unusable_frac"):
    name = f"train/rewards/understanding/{key}"
    rows.append([key] + [spread([window(run, name, first)]) for first in (True, False)])
  return rows


def explanation_rows(directory: str) -> list[list[str]]:
  """The teacher-data runs: explanations kept (right final answer) of the questions sampled, teacher tokens."""
  rows = []
  for name in ("explanations_before", "explanations_after"):
    summary = read_summary(os.path.join(directory, name))
    rows.append([name, str(summary.get("records", "–")), str(summary.get("questions", "–")),
                 str(summary.get("teacher_tokens", "–"))])
  return rows


def read_summary(run_dir: str) -> dict:
  return read_summary_like(os.path.join(run_dir, "summary.json"))


def read_summary_like(path: str) -> dict:
  import json

  return json.load(open(path)) if os.path.isfile(path) else {}


def calibration_rows(directory: str, start_eval: dict | None, rows_of=("grpo_confidence", "calibration"),
                     start="start: SFT on confidence data") -> list[list[str]]:
  """ECE, Brier and coverage of the confidence-SFT start and of the two RL rows from it (rr.eval: greedy plus 8
  samples per question)."""
  keys = (("accuracy",), ("ece",), ("brier",), ("confidence_coverage", "coverage"))

  def get(found, path):
    for key in path:
      found = found.get(key) if isinstance(found, dict) else None
    return found

  rows = [[start] + [spread([get(start_eval or {}, k)]) for k in keys]]
  for method in rows_of:
    evals = [current_evaluation(d) or {} for d in runs_of(directory, method)]
    rows.append([LABELS[method]] + [spread([get(e, k) for e in evals]) for k in keys])
  return rows


def info_gain_rows(directory: str) -> list[list[str]]:
  """RLP's own measure at the step-0 and the final evaluation (a greedy thought, the held-out text)."""
  rows = []
  for key in ("eval/info_gain", "eval/info_gain_over_empty", "eval/nll_no_thought", "eval/nll_thought",
              "eval/thought_closed_frac"):
    points = [curve(d, key) for d in runs_of(directory, "info_gain")]
    rows.append([key, spread([p[0][1] for p in points if p]), spread([p[-1][1] for p in points if p])])
  return rows


def dpo_rows(directory: str) -> list[list[str]]:
  rows = []
  for key in ("train/rewards/accuracies", "train/rewards/margins", "train/logps/chosen", "train/logps/rejected"):
    dirs = runs_of(directory, "dpo")
    rows.append([key] + [spread([window(d, key, first) for d in dirs]) for first in (True, False)])
  return rows


def evaluate_start(directory: str, name: str = "sft_confidence") -> dict | None:
  """rr.eval of a shared run's checkpoint with the grid's pass@k settings (once; the experiment evaluates only its
  rows), for the "before" of the calibration table."""
  from rr import experiment

  run_dir = os.path.join(directory, name)
  if not os.path.isfile(os.path.join(run_dir, "summary.json")):
    return None
  if current_evaluation(run_dir) is None:  # the settings of the variant that wrote the directory
    marker = read_summary_like(os.path.join(directory, "experiment.json"))
    spec = get_experiment("runlocal" if marker.get("experiment", "").endswith("_runlocal") else None).pass_at_k
    experiment._evaluate(experiment.Run(name, run_dir, None), spec)  # pylint: disable=protected-access
  return current_evaluation(run_dir)


def write_report(directory: str) -> str:
  """DIR/rationale_rewards_report.md: each method's own measure, and the step-reward plot."""
  lines = ["# rationale_rewards: each method's own measure", "",
           "Means ± sample std over the finished seeds (0, 1, 2) unless a row is one shared run.", ""]
  lines += ["## When to think: by difficulty (greedy, rr.eval's held-out questions)", ""]
  lines += table(["method", "digits", "accuracy", "no thought", "mean length"],
                 by_difficulty_rows(directory, ("grpo", "grpo_dropout", "think_skip")))
  lines += ["", "## Process reward, gated and not: rewards over the first and last 10 steps, then held-out", ""]
  lines += table(["method", "correctness, first 10", "correctness, last 10", "step reward, first 10",
                  "step reward, last 10", "accuracy", "step accuracy"],
                 step_reward_rows(directory, ("grpo", "gated", "ungated")))
  plotted = plot_step_rewards(directory, os.path.join(directory, STEP_PLOT))
  if plotted:
    lines += ["", f"![{STEP_PLOT}]({STEP_PLOT})"]
  lines += ["", "## Length shaping: length and accuracy by difficulty", ""]
  lines += table(["method", "digits", "accuracy", "no thought", "mean length"],
                 by_difficulty_rows(directory, ("grpo", "length")))
  lines += ["", "## Calibration: ECE, Brier, coverage before and after RL", ""]
  lines += table(["model", "accuracy", "ECE", "Brier", "stated confidence"],
                 calibration_rows(directory, evaluate_start(directory))
                 + calibration_rows(directory, evaluate_start(directory, "sft_choice_confidence"),
                                    ("grpo_choice", "calibration_choice"),
                                    "start: SFT on confidence data, multiple choice"))
  lines += ["", "## RLT: the teacher's reward over its first and last 10 steps (one shared run)", ""]
  lines += table(["train/rewards/understanding/", "first 10 steps", "last 10 steps"], teacher_rows(directory))
  lines += ["", "The explanations each teacher wrote for the students (one per train question, kept when its final "
            "answer is right):", ""]
  lines += table(["teacher data", "records", "questions", "teacher tokens"], explanation_rows(directory))
  lines += ["", "## RLP: held-out information gain (nats per continuation token), step 0 and the end", ""]
  lines += table(["measure", "step 0", "end"], info_gain_rows(directory))
  lines += ["", "## DPO: the implicit reward over the first and last 10 steps", ""]
  lines += table(["measure", "first 10 steps", "last 10 steps"], dpo_rows(directory))
  out = os.path.join(directory, REPORT)
  with open(out, "w") as f:
    f.write("\n".join(lines) + "\n")
  return out


if __name__ == "__main__":
  if len(sys.argv) != 3 or sys.argv[1] != "--report":
    sys.exit("usage: python experiments/rationale_rewards.py --report DIR (an experiments/rationale_rewards.py run's "
             "--dir)")
  print(write_report(sys.argv[2]))
