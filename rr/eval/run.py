"""Evaluate a checkpoint: load it with its config, sample the held-out questions, score and assemble metrics.

The pieces, in the order `evaluate` runs them, each usable alone (tests call `score` and `assemble` on
hand-made completions):

  resolve_checkpoint  a run's --workdir, an rr checkpoints directory or a Hugging Face directory -> (dir, workdir)
  run_config          without --config: the config the run wrote into its workdir (config.json)
  parse_ks            "1,4,16" -> [1, 4, 16]
  prepare             every check that can fail on user input, before any sampling
  sample              greedy once per question, then n samples per question, batched through the Sampler
  score               one completion text -> Scored (rr.eval.scoring)
  assemble            Scored completions -> the metrics dict written to eval.json (docs/methods.md,
                      "Evaluation metrics"); ECE and Brier come with `confidence_coverage`, the share of
                      completions that state a confidence; `by_difficulty` holds the headline metrics
                      (`headline`) of each difficulty level's questions

Unparsed answers and how completions are scored: `rr.eval.scoring`.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Sequence

import numpy as np

from rr.checkpoint import directory_kind, find_checkpoints_dir
from rr.data.prompts import parse_completion
from rr.errors import UserError
from rr.eval.scoring import Scored, score
from rr.rewards.builtin import step_checker


class EvalError(UserError):
  """A bad flag, checkpoint or output directory for `python -m rr.eval`; the message names it."""


# ------------------------------------------------------------------------------------------ input checks


def resolve_checkpoint(path: str) -> tuple[str, str]:
  """(rr checkpoints directory, run workdir) for --checkpoint: a run's --workdir or its checkpoints/ dir."""
  if not path:
    raise EvalError("--checkpoint is required: pass a run's --workdir (or its checkpoints/ directory)")
  path = os.path.abspath(path)
  if not os.path.exists(path):
    raise EvalError(f"--checkpoint {path} does not exist; pass a run's --workdir (or its checkpoints/ directory)")
  if not os.path.isdir(path):
    raise EvalError(f"--checkpoint {path} is not a directory; pass a run's --workdir (or its checkpoints/ "
                    "directory)")
  kind = directory_kind(path)
  if kind == "hf":
    return path, path  # a Hugging Face model directory: read by rr.models.from_hf
  if not kind:
    stages = sorted(name for name in os.listdir(path) if os.path.isdir(os.path.join(path, name, "checkpoints")))
    hint = (f"; its stages keep their own: pass one of --checkpoint "
            f"{' or '.join(os.path.join(path, stage) for stage in stages)}" if stages else
            "; pass a run's --workdir (it holds checkpoints/) or an rr checkpoints directory")
    raise EvalError(f"--checkpoint {path} holds no rr checkpoint (no checkpoints/ and no <step>/ folders){hint}")
  directory = find_checkpoints_dir(path)
  return directory, os.path.dirname(directory) if os.path.basename(directory) == "checkpoints" else directory


def run_config(workdir: str, overrides=()):
  """The config a run in `workdir` trained with, for `--checkpoint` without `--config`: the newest of the
  config.json files it wrote (rr.config.run_config_files), with command-line `overrides` applied."""
  from rr.config import apply_overrides, is_run_config_file, read_run_config, run_config_files

  files = [path for path in run_config_files(workdir) if is_run_config_file(path)]
  if not files:
    raise EvalError(f"--checkpoint {workdir} holds no config.json written by an rr run, so its config is unknown; "
                    "pass --config configs/<name>.py[:arg] (the config it was trained with), or point --checkpoint "
                    "at a run's --workdir (for a two-stage job, a stage's, like DIR/grpo) that holds one")
  config = read_run_config(files[-1])
  if overrides:
    apply_overrides(config, list(overrides))
  print(f"rr.eval: using the run's config {files[-1]}", file=sys.stderr)
  return config


def parse_ks(text: str) -> list[int]:
  """--k "1,4,16" -> sorted distinct positive ints."""
  parts = [p.strip() for p in str(text).split(",")]
  try:
    ks = [int(p) for p in parts]
  except ValueError:
    raise EvalError(f"--k {text!r} is not a comma-separated list of positive integers, e.g. --k 1,4,16") from None
  if not ks or any(k < 1 for k in ks):
    raise EvalError(f"--k {text!r} is not a comma-separated list of positive integers, e.g. --k 1,4,16")
  return sorted(set(ks))


def check_sampling_flags(ks: Sequence[int], samples: int, temperature: float, ece_bins: int,
                         num_examples: int | None) -> None:
  if samples < 1:
    raise EvalError(f"--samples {samples} must be >= 1 (samples per question for pass@k)")
  if max(ks) > samples:
    raise EvalError(f"--k {','.join(map(str, ks))} has k={max(ks)} larger than --samples {samples}; pass@k needs "
                    f"at least k samples per question: raise --samples to {max(ks)} or drop that k")
  if not temperature > 0:
    raise EvalError(f"--temperature {temperature} must be > 0 (greedy accuracy is always reported)")
  if ece_bins < 1:
    raise EvalError(f"--ece-bins {ece_bins} must be >= 1")
  if num_examples is not None and num_examples < 1:
    raise EvalError(f"--num-examples {num_examples} must be >= 1")


OUTPUT_FILES = ("eval.json", "report.md", "completions.jsonl", "pass_at_k.png", "reliability.png", "lengths.png")


def check_out_dir(out: str) -> None:
  """rr never overwrites a user's files: an --out that already holds an evaluation is refused."""
  if os.path.exists(out) and not os.path.isdir(out):
    raise EvalError(f"--out {out} exists and is not a directory; pass another --out")
  taken = [name for name in OUTPUT_FILES if os.path.exists(os.path.join(out, name))]
  if taken:
    raise EvalError(f"--out {out} already holds {', '.join(taken)}; rr never overwrites a user's files: "
                    "pass another --out or move those aside")


@dataclasses.dataclass
class Prepared:
  config: object
  checkpoints_dir: str
  workdir: str
  out: str
  step: int
  model_cfg: object
  tokenizer: object
  examples: list


def prepare(checkpoint: str, config, *, out: str | None, ks: Sequence[int], samples: int, temperature: float,
            ece_bins: int, num_examples: int | None, writes: bool = True) -> Prepared:
  """Every check on user input, cheapest first, before params are read or anything is sampled. `writes=False`
  (rr.eval.load, which writes no report) skips the check of `out`."""
  check_sampling_flags(ks, samples, temperature, ece_bins, num_examples)
  checkpoints_dir, workdir = resolve_checkpoint(checkpoint)
  out = os.path.abspath(out or os.path.join(workdir, "eval"))
  if writes:
    check_out_dir(out)

  from rr import models
  from rr.checkpoint import Checkpoints
  from rr.data.inputs import load_inputs

  want = num_examples or config.eval.num_examples
  config = config.copy_and_resolve_references()
  if config.data.source == "task":
    # load_inputs builds the same test split as training did (a larger size gives a prefix-extension of a
    # smaller one); the train split is not needed here, so only one example of it is generated.
    config.data.test_size = max(config.data.test_size, want)
    config.data.train_size = 1
  config.data.rationales_path = ""  # teacher records replace train examples only
  inputs = load_inputs(config, need_train=False)
  if not inputs.test:
    raise EvalError("the config has no test split to evaluate on; set config.data.test_path (a JSONL or Parquet "
                    "file) or, for TFDS data, config.data.test_split")
  examples = inputs.test[:want]
  if len(examples) < want:
    print(f"rr.eval: the test split has only {len(examples)} examples; evaluating all of them", file=sys.stderr)

  tokenizer = inputs.tokenizer
  if directory_kind(checkpoints_dir) == "hf":
    try:
      model_cfg = models.hf_io.config_from_hf(models.hf_io.read_config(checkpoints_dir))
    except models.HFCheckpointError as e:
      raise EvalError(f"--checkpoint {checkpoints_dir}: {e}") from e
    if model_cfg.vocab_size < tokenizer.vocab_size:
      raise EvalError(f"--checkpoint {checkpoints_dir} has vocab_size={model_cfg.vocab_size}, fewer than the "
                      f"--config tokenizer's {tokenizer.vocab_size}; pass the tokenizer the model was trained with")
    return Prepared(config=config, checkpoints_dir=checkpoints_dir, workdir=workdir, out=out, step=None,
                    model_cfg=model_cfg, tokenizer=tokenizer, examples=examples)
  checkpoints = Checkpoints(checkpoints_dir)
  step = checkpoints.latest_step()
  if step is None:
    raise EvalError(f"--checkpoint {checkpoints_dir} holds no checkpoint; pass a run's --workdir after it has "
                    "saved one (or its checkpoints/ directory)")
  record = checkpoints.read_record(step)
  if record.get("vocab_size") != tokenizer.vocab_size:
    named = " ".join(filter(None, (config.tokenizer.kind, config.tokenizer.path)))
    raise EvalError(f"checkpoint {checkpoints_dir}/{step} was written with vocab_size={record.get('vocab_size')}, "
                    f"but the --config tokenizer ({named}) has vocab_size={tokenizer.vocab_size}; pass the "
                    "--config the checkpoint was trained with")
  try:
    model_cfg = models.ModelConfig(**record["model"])
  except (KeyError, TypeError, ValueError) as e:
    raise EvalError(f"checkpoint {checkpoints_dir}/{step} has an unreadable model record ({e}); was it written "
                    "by rr?") from e
  checkpoints.close()
  return Prepared(config=config, checkpoints_dir=checkpoints_dir, workdir=workdir, out=out, step=step,
                  model_cfg=model_cfg, tokenizer=tokenizer, examples=examples)


# ------------------------------------------------------------------------------------------ sampling


def sample(sampler, params, tokenizer, examples, *, max_new_tokens: int, batch_size: int, strategy,
           num_samples: int, seed: int) -> tuple[list[list[str]], np.ndarray]:
  """(texts [Q][S], lengths QxS): num_samples completions of every question, batch_size prompts at a time."""
  import jax

  from rr.data import decode_completion, encode_prompts

  prompts = encode_prompts(tokenizer, [e.question for e in examples])
  texts, lengths = [], []
  for batch, start in enumerate(range(0, len(prompts), batch_size)):
    out = sampler(params, prompts[start:start + batch_size], max_new_tokens=max_new_tokens, strategy=strategy,
                  rng=jax.random.fold_in(jax.random.key(seed), batch), num_samples=num_samples)
    rows = [decode_completion(tokenizer, ids) for ids in out.tokens]
    for q in range(len(rows) // num_samples):  # rows are prompt-major
      texts.append(rows[q * num_samples:(q + 1) * num_samples])
      lengths.append(out.lengths[q * num_samples:(q + 1) * num_samples])
  return texts, np.asarray(lengths, np.int64).reshape(len(examples), num_samples)


# ------------------------------------------------------------------------------------------ scoring


def assemble(examples, greedy: Sequence[Scored], samples: Sequence[Sequence[Scored]], ks: Sequence[int],
             ece_bins: int = 10) -> dict:
  """The metrics of eval.json from scored completions: greedy[q], samples[q][j] (every question n samples)."""
  from rr.eval import metrics as m

  if len(greedy) != len(examples) or len(samples) != len(examples):
    raise ValueError(f"assemble: {len(examples)} examples, {len(greedy)} greedy and {len(samples)} sampled rows")
  has_checker = bool(examples) and all(step_checker(e.task) is not None for e in examples)
  out = {"num_examples": len(examples), "num_samples": len(samples[0]) if samples else 0, "ks": list(ks),
         **headline(greedy, samples, ks, has_checker)}
  out["unparsed"] = int(sum(s.answer is None for s in greedy))
  out["unparsed_sampled"] = int(sum(s.answer is None for row in samples for s in row))
  levels = [e.difficulty for e in examples]
  out["accuracy_by_difficulty"] = m.accuracy_by(levels, np.array([s.correct for s in greedy], bool))
  out["no_thought"] = no_thought_share(greedy)
  out["by_difficulty"] = {}
  for level in sorted(set(levels)):
    at_level = [g for g, d in zip(greedy, levels) if d == level]
    out["by_difficulty"][str(level)] = {
        "count": levels.count(level),
        **headline(at_level, [row for row, d in zip(samples, levels) if d == level], ks, has_checker),
        "mean_length": float(np.mean([g.length for g in at_level])), "no_thought": no_thought_share(at_level)}
  if examples and all(e.task == "choice" for e in examples):
    out["choice_confusion"] = choice_confusion(examples, greedy)
  out["length"] = m.length_stats(np.array([s.length for s in greedy]))
  out["length_sampled"] = m.length_stats(np.array([s.length for row in samples for s in row]))

  # ECE and Brier over the greedy and sampled completions that state a confidence; coverage says how many
  # of all of them that is, since leaving the confidence out on hard questions would flatter both.
  scored = [*greedy, *(s for row in samples for s in row)]
  stated = [s for s in scored if s.confidence is not None]
  cal = m.calibration(np.array([s.confidence for s in stated], np.float64),
                      np.array([s.correct for s in stated], bool), ece_bins)
  out["ece"] = cal["ece"] if cal["count"] else None
  out["brier"] = cal["brier"] if cal["count"] else None
  out["confidence_coverage"] = m.confidence_coverage([s.confidence for s in scored], [s.correct for s in scored])
  out["calibration"] = cal
  return out


def no_thought_share(scored: Sequence[Scored]) -> float:
  """The share of completions that answer with an empty rationale ("<think></think>" then an answer, or no think
  block at all): how often a model that may skip its thinking (TON's thought dropout) does."""
  if not scored:
    return float("nan")
  return float(np.mean([s.answer is not None and not parse_completion(s.text)[0] for s in scored]))


def headline(greedy: Sequence[Scored], samples: Sequence[Sequence[Scored]], ks: Sequence[int],
             has_checker: bool) -> dict:
  """Greedy accuracy (and step accuracy), pass@k, maj@k (and CoT-pass@k) over these questions: eval.json's
  headline, and each row of its by_difficulty."""
  from rr.eval import metrics as m

  n = len(samples[0]) if samples else 0
  correct = np.array([s.correct for s in greedy], bool)
  right_QxS = np.array([[s.correct for s in row] for row in samples], bool).reshape(len(greedy), n)
  answers_QxS = [[s.answer for s in row] for row in samples]
  cot_QxS = np.array([[bool(s.steps_ok) for s in row] for row in samples], bool).reshape(len(greedy), n)
  out = {"accuracy": float(correct.mean()) if correct.size else 0.0}
  if has_checker:
    out["step_accuracy"] = float(np.mean([bool(s.steps_ok) for s in greedy]))
  for k in ks:
    out[f"pass@{k}"] = m.mean_pass_at_k(right_QxS, k)
    out[f"maj@{k}"] = m.maj_at_k(answers_QxS, right_QxS, k)
    if has_checker:
      out[f"cot_pass@{k}"] = m.mean_pass_at_k(cot_QxS, k)
  return out


def choice_confusion(examples, greedy: Sequence[Scored]) -> dict:
  """Multiple choice, greedy: accuracy and confusion[gold letter][chosen letter or "unparsed"] over the letters
  of the question with the most choices (rr.eval.metrics.choice_confusion)."""
  from rr.data.answers import DEFAULT_LABELS, choice_letter
  from rr.eval import metrics as m

  labels = [tuple(e.meta) or DEFAULT_LABELS for e in examples]
  letters = max(labels, key=len)
  chosen = [None if s.answer is None else choice_letter(s.answer, ls) for ls, s in zip(labels, greedy)]
  return m.choice_confusion(chosen, [e.answer for e in examples], letters)


# ------------------------------------------------------------------------------------------ the whole run


def _data_name(data) -> str:
  """What was evaluated, for eval.json and report.md: a task name, a test file or a TFDS dataset's split."""
  if data.source == "task":
    return data.task
  if data.source == "tfds":
    return f"tfds {data.tfds_name}:{data.test_split} in {data.tfds_dir} ({data.format})"
  return data.test_path if data.format == "rationale" else f"{data.test_path} ({data.format})"


def evaluate(checkpoint: str, config=None, *, k: Sequence[int] | str = (1, 4, 16), samples: int | None = None,
             temperature: float = 1.0, num_examples: int | None = None, ece_bins: int = 10, out: str | None = None,
             overrides=None) -> dict:
  """Evaluates `checkpoint` (a run's workdir, an rr checkpoints directory or a Hugging Face model directory) as
  `python -m rr.eval` does, and returns the metrics it writes to eval.json.

  `config` is a ConfigDict, a `configs/<name>.py[:arg]` spec, or None for the config the run wrote into its
  workdir; `overrides` ({"eval.batch_size": 8} or [(key, value)]) are applied to it as the command line's
  --config.KEY=VALUE are.
  `samples` defaults to the largest k; `out` to <run workdir>/eval/ (an existing report is never overwritten).
  """
  ks = parse_ks(k) if isinstance(k, str) else [int(x) for x in k]
  samples = max(ks) if samples is None else samples
  check_sampling_flags(ks, samples, temperature, ece_bins, num_examples)
  config = checkpoint_config(checkpoint, config, overrides)
  prepared = prepare(checkpoint, config, out=out, ks=ks, samples=samples, temperature=temperature,
                     ece_bins=ece_bins, num_examples=num_examples)
  return evaluate_prepared(prepared, ks=ks, samples=samples, temperature=temperature, ece_bins=ece_bins)


def checkpoint_config(checkpoint: str, config=None, overrides=None):
  """The config to read `checkpoint` with: `config` (a ConfigDict, copied, or a configs/<name>.py[:arg] spec) or,
  when None, the one its run wrote (run_config); `overrides` ({key: value} or [(key, value)]) applied."""
  from rr.config import apply_overrides, load_config

  _, workdir = resolve_checkpoint(checkpoint)  # a wrong directory is named before the config loads
  pairs = [(key, str(value)) for key, value in dict(overrides or {}).items()]
  if config is None:
    return run_config(workdir, pairs)
  if isinstance(config, str):
    return load_config(config, pairs)
  config = config.copy_and_resolve_references()
  if pairs:
    apply_overrides(config, pairs)
  return config


def read_params(prepared: Prepared):
  """The checkpoint's params as host arrays: an rr checkpoint's (a LoRA run's merged) or a Hugging Face
  directory's."""
  import jax

  from rr import models
  from rr.checkpoint import Checkpoints

  if prepared.step is None:  # a Hugging Face directory
    try:
      params = models.from_hf(prepared.checkpoints_dir)[1]
    except models.HFCheckpointError as e:
      raise EvalError(f"--checkpoint {prepared.checkpoints_dir}: {e}") from e
  else:
    checkpoints = Checkpoints(prepared.checkpoints_dir)
    params = checkpoints.policy_params(prepared.step)  # a LoRA run's merged
    checkpoints.close()
  return jax.tree.map(np.asarray, params)


def make_sampler(config, model_cfg, tokenizer):
  """The Sampler a run's config asks for: its mesh and sharding rules, the tokenizer's eos and pad ids."""
  from rr import sharding
  from rr.config import ConfigError
  from rr.sampler import Sampler

  try:
    mesh = sharding.make_mesh(config.mesh.data, config.mesh.fsdp, config.mesh.tensor)
  except ValueError as e:
    raise ConfigError(f"config.mesh: {e}") from e
  with sharding.rules_from_config(config):  # the sampler decodes by the run's rules
    return Sampler(model_cfg, eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id, mesh=mesh)


def evaluate_prepared(prepared: Prepared, *, ks: Sequence[int], samples: int, temperature: float,
                      ece_bins: int) -> dict:
  """Reads the params, samples greedy + n per question, scores, and writes eval.json, report.md and plots."""
  import time

  from rr.eval import report
  from rr.sampler import Greedy, Sampling

  start = time.time()
  config, tokenizer, examples = prepared.config, prepared.tokenizer, prepared.examples
  params = read_params(prepared)
  sampler = make_sampler(config, prepared.model_cfg, tokenizer)

  kwargs = dict(max_new_tokens=config.eval.max_new_tokens, batch_size=config.eval.batch_size, seed=config.seed)
  print(f"rr.eval: {prepared.checkpoints_dir}/{prepared.step or ''}: {len(examples)} questions, greedy + {samples} "
        f"samples at temperature {temperature}", file=sys.stderr)
  greedy_texts, greedy_lengths = sample(sampler, params, tokenizer, examples, strategy=Greedy(), num_samples=1,
                                        **kwargs)
  sample_texts, sample_lengths = sample(sampler, params, tokenizer, examples,
                                        strategy=Sampling(temperature=temperature), num_samples=samples, **kwargs)
  greedy = [score(e, t[0], l[0]) for e, t, l in zip(examples, greedy_texts, greedy_lengths)]
  sampled = [[score(e, t, l) for t, l in zip(ts, ls)] for e, ts, ls in zip(examples, sample_texts, sample_lengths)]

  results = assemble(examples, greedy, sampled, ks, ece_bins)
  results.update({"checkpoint": prepared.checkpoints_dir, "step": None if prepared.step is None else int(prepared.step), "temperature": temperature,
                  "max_new_tokens": config.eval.max_new_tokens, "task": _data_name(config.data),
                  "sampler_compilations": sampler.num_compilations, "seconds": time.time() - start})
  report.write_all(prepared.out, results, examples, greedy, sampled)
  return results
