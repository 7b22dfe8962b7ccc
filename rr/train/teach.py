"""Teacher data (`config.trainer = "teach"`): k rationales per train question sampled from a frozen teacher,
filtered, and written as a dataset whose every record says where it came from (docs/methods.md, "Teacher data").

Phases: the config's checks; inputs; the workdir (teacher data of another config stops the run here); the
teacher (another vocabulary stops it here, before anything is written); then the questions in chunks of
teach.questions_per_chunk. Chunk c samples with a key that is a pure function of (config.seed, c) and is saved
atomically as WORKDIR/chunks/<c:06d>.jsonl, so a run stopped at any point (Ctrl-C, SIGTERM after the chunk in
hand, SIGKILL anywhere) and started again skips the chunks on disk and ends with the same records as a run never
stopped. Last, WORKDIR/data.jsonl (every chunk's records in order; `config.data.rationales_path` and
`data.source=jsonl` read it), the optional TFDS copy and summary.json.

Filters are registered by name, so a user adds one from their own module:

  from rr.train.teach import FILTERS

  @FILTERS.register("short_answer")
  def short_answer(candidates, samples, teach):  # -> one keep flag per candidate
    return [len(s.answer) < 10 for s in candidates]

`candidates` are the question's samples still kept when the filter runs, `samples` all k of its pass,
`teach` is config.teach.

teach.confidence (SaySelf, 2405.20974) ends every record's answer with the line "confidence: c", c the share of the
question's k first-pass samples whose answer has the record's vote key (unfinished and unparsed samples agree with
none), to 2 decimals: the line rr.rewards.builtin.stated_confidence reads, so SFT on the records teaches the student
to state a confidence and the `calibration` rewards can then train it in RL.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import sys
import time
from typing import Callable, Sequence

import jax
from tqdm import tqdm

from rr import files
from rr.config import ConfigError, plain_dict, read_json_or_none, save_run_config
from rr.data import DataError, decode_completion, encode_prompts, parse_completion
from rr.data.inputs import load_inputs
from rr.data.jsonl import load_jsonl
from rr.data.teacher_data import DATA_FILE
from rr.eval.scoring import Scored, score
from rr.registry import Registry, split_names
from rr.rewards.builtin import split_confidence
from rr.sampler import Sampler, Sampling
from rr.sampler.sampler import DEFAULT_PROMPT_BUCKETS
from rr.tasks import Example
from rr.train import TRAINERS
from rr.train.frozen import load_frozen
from rr.train.interrupt import StopRequest
from rr.train.metrics import MetricWriter
from rr.train.privileged import policy_question
from rr.train.setup import build_mesh

FILTERS = Registry("teacher-data filter", "config.teach.filters")
ALWAYS = ("unfinished", "unparsed")  # rejections before any filter: cut at max_new_tokens, no answer to read
CHUNKS = "chunks"
IDENTITY_FILE = "teach.json"  # what decides the records: a rerun with another is refused
COUNTS = ("questions", "samples", "teacher_tokens", "records", "questions_covered", "rationalised",
          "questions_retried", "first_pass_samples", "first_pass_correct")


@dataclasses.dataclass(frozen=True)
class Sample:
  """One completion of one question, as the filters see it."""
  index: int  # which of the question's k samples
  text: str  # decoded, up to its eos
  tokens: int  # generated tokens, eos included
  finished: bool  # it ended with eos (it was not cut at teach.max_new_tokens)
  scored: Scored  # rr.eval.scoring.score against the question's example: correct, answer (the vote key)
  rationale: str  # rr.data.prompts.parse_completion's
  answer: str


def reasons(teach, names: Sequence[str]) -> tuple[str, ...]:
  """Every reason a sample can be rejected for under these settings, in the order they are applied."""
  return ALWAYS + tuple(names) + (("max_per_question",) if teach.max_per_question else ())


def usable(sample: Sample) -> bool:
  """The checks no config turns off: the completion ended with eos and has an answer to read."""
  return sample.finished and sample.scored.answer is not None


# ------------------------------------------------------------------------------------------ filters


@FILTERS.register("correct")
def correct(candidates: Sequence[Sample], samples: Sequence[Sample], teach) -> list[bool]:
  """The task's verifier accepts the answer: the one evaluation and the rewards use."""
  return [s.scored.correct for s in candidates]


@FILTERS.register("wrong")
def wrong(candidates: Sequence[Sample], samples: Sequence[Sample], teach) -> list[bool]:
  """The verifier rejects the answer (unfinished and unparsed samples never get this far): the student's own
  mistakes, the rejected side of contrastive rationale distillation (trainer "dpo")."""
  return [not s.scored.correct for s in candidates]


def majority_answer(samples: Sequence[Sample]) -> str | None:
  """The most common vote key among the usable samples; None when there is none, or when two keys tie for the
  most votes (no consensus: self-consistency keeps nothing rather than pick one)."""
  ranked = collections.Counter(s.scored.answer for s in samples if usable(s)).most_common(2)
  if not ranked or (len(ranked) == 2 and ranked[0][1] == ranked[1][1]):
    return None
  return ranked[0][0]


@FILTERS.register("consistent")
def consistent(candidates: Sequence[Sample], samples: Sequence[Sample], teach) -> list[bool]:
  """Self-consistency: the answer means what the majority of the question's k samples answer."""
  majority = majority_answer(samples)
  return [majority is not None and s.scored.answer == majority for s in candidates]


@FILTERS.register("length")
def length(candidates: Sequence[Sample], samples: Sequence[Sample], teach) -> list[bool]:
  """teach.min_tokens <= generated tokens (eos included) <= teach.max_tokens; 0 is no bound."""
  low, high = teach.min_tokens, teach.max_tokens
  return [(not low or s.tokens >= low) and (not high or s.tokens <= high) for s in candidates]


@FILTERS.register("dedup")
def dedup(candidates: Sequence[Sample], samples: Sequence[Sample], teach) -> list[bool]:
  """The first of the candidates with one whitespace-normalised (rationale, answer)."""
  seen, keep = set(), []
  for s in candidates:
    key = (" ".join(s.rationale.split()), " ".join(s.answer.split()))
    keep.append(key not in seen)
    seen.add(key)
  return keep


def select(samples: Sequence[Sample], names: Sequence[str], teach) -> tuple[list[Sample], collections.Counter]:
  """(kept samples in sample order, rejections by reason) of one question's pass: the checks of `usable`, the
  named filters in order, then teach.max_per_question. Each rejected sample counts once, under the first reason
  that turned it away, so samples = kept + all rejections."""
  rejected = collections.Counter()
  kept = []
  for s in samples:
    if not s.finished:
      rejected["unfinished"] += 1
    elif s.scored.answer is None:
      rejected["unparsed"] += 1
    else:
      kept.append(s)
  for name in names:
    if not kept:
      break
    flags = list(FILTERS.get(name)(kept, samples, teach))
    if len(flags) != len(kept):
      raise ValueError(f"teacher-data filter {name!r} returned {len(flags)} flags for {len(kept)} candidates")
    rejected[name] += flags.count(False)
    kept = [s for s, keep in zip(kept, flags) if keep]
  if teach.max_per_question and len(kept) > teach.max_per_question:
    rejected["max_per_question"] += len(kept) - teach.max_per_question
    kept = kept[:teach.max_per_question]
  return kept, rejected


# ------------------------------------------------------------------------------------------ config


def teacher_path(config) -> str:
  """The teacher's directory, absolute: config.teach.teacher, else config.init_checkpoint (a ReST-EM round's
  stage before)."""
  path = config.teach.teacher or config.init_checkpoint
  if not path:
    raise ConfigError("the teach trainer needs a teacher: set config.teach.teacher to an rr run's --workdir or a "
                      "Hugging Face model directory (or config.init_checkpoint, as a stage after another does)")
  return files.absolute(path)


def check_config(config) -> list[str]:
  """Every check of a teach config that reads no file (so a job of stages runs them before its first stage);
  returns the filter names."""
  teach = config.teach
  if config.data.rationales_path:
    raise ConfigError(f"config.data.rationales_path={config.data.rationales_path!r} is set in a teach run, which "
                      "writes rationales and does not read them; set it to '' (the train questions come from "
                      "config.data as usual)")
  teacher_path(config)
  names = split_names(teach.filters)
  for name in names:
    FILTERS.get(name)
  if teach.rationalise and "correct" not in names:
    raise ConfigError(f"config.teach.rationalise=True needs the 'correct' filter in config.teach.filters="
                      f"{teach.filters!r}: a sample given the answer as a hint is kept only when the verifier "
                      "accepts it")
  for key in ("min_tokens", "max_tokens", "max_per_question"):
    if teach[key] < 0:
      raise ConfigError(f"config.teach.{key}={teach[key]} must be >= 0 (0 = no bound)")
  if teach.min_tokens and teach.max_tokens and teach.min_tokens > teach.max_tokens:
    raise ConfigError(f"config.teach.min_tokens={teach.min_tokens} exceeds config.teach.max_tokens="
                      f"{teach.max_tokens}; no completion can pass the length filter")
  if "length" in names and not (teach.min_tokens or teach.max_tokens):
    raise ConfigError("config.teach.filters has 'length' but config.teach.min_tokens and max_tokens are both 0 "
                      "(no bound); set one of them or drop 'length'")
  if teach.confidence and config.data.prompt_context:
    raise ConfigError(f"config.teach.confidence=True with config.data.prompt_context={config.data.prompt_context!r}: "
                      "the confidence is the share of the teacher's samples that agree, and a teacher shown the gold "
                      f"{config.data.prompt_context} agrees with itself whatever the question's difficulty; set "
                      "data.prompt_context='' or teach.confidence=False")
  strategy(teach)
  if teach.tfds_name:
    from rr.data.tfds_builder import check_name  # no TensorFlow import: only the name's pattern
    try:
      check_name(teach.tfds_name)
    except ValueError as e:
      raise ConfigError(f"config.teach.tfds_name: {e}") from None
  return names


def strategy(teach) -> Sampling:
  try:
    return Sampling(temperature=teach.temperature, top_k=teach.top_k, top_p=teach.top_p)
  except ValueError as e:
    raise ConfigError(f"config.teach: {e}") from None


def identity(config, teacher: str) -> dict:
  """The settings the records depend on; a workdir holding records of other settings is refused."""
  plain = plain_dict(config)
  return {"teacher": teacher, "seed": plain["seed"], "data": plain["data"], "tokenizer": plain["tokenizer"],
          "teach": plain["teach"]}


def hinted_question(example: Example) -> str:
  """STaR's rationalisation prompt: the question with its gold answer as a hint (plain ASCII, so every
  tokenizer encodes it)."""
  return f"{example.question} (answer: {example.answer})"


# ------------------------------------------------------------------------------------------ sampling


def sample_pass(sampler, params, tokenizer, examples: Sequence[Example], questions: Sequence[str], key,
                teach) -> list[list[Sample]]:
  """teach.samples completions of each prompt text in `questions`, scored against the matching `examples` (so a
  hinted question is scored as its plain example)."""
  k = teach.samples
  out = sampler(params, encode_prompts(tokenizer, questions), max_new_tokens=teach.max_new_tokens,
                strategy=strategy(teach), rng=key, num_samples=k)
  passes = []
  for i, example in enumerate(examples):
    samples = []
    for j in range(k):
      ids, n = out.tokens[i * k + j], int(out.lengths[i * k + j])
      text = decode_completion(tokenizer, ids)
      rationale, answer = parse_completion(text)
      samples.append(Sample(index=j, text=text, tokens=n, finished=n > 0 and int(ids[n - 1]) == tokenizer.eos_id,
                            scored=score(example, text, n), rationale=rationale, answer=answer))
    passes.append(samples)
  return passes


def chunk_key(seed: int, chunk: int) -> jax.Array:
  return jax.random.fold_in(jax.random.key(seed), chunk)


def sample_chunk(sampler, params, tokenizer, questions: Sequence[tuple[int, Example]], key, config,
                 teacher: str) -> tuple[list[dict], dict]:
  """(records, counts) of one chunk of (train index, example) pairs: the first pass (key fold 0), then, with
  teach.rationalise, the questions it left without a record again with their answer as a hint (key fold 1)."""
  teach = config.teach
  names = split_names(teach.filters)
  examples = [e for _, e in questions]
  counts = collections.Counter(questions=len(questions))
  rejected = collections.Counter({reason: 0 for reason in reasons(teach, names)})
  # data.prompt_context: what the teacher reads first (an RLT teacher, the gold answer); the records keep the question
  questions_read = [policy_question(e, config.data.prompt_context) for e in examples]
  first = sample_pass(sampler, params, tokenizer, examples, questions_read, jax.random.fold_in(key, 0), teach)
  kept = []
  for samples in first:
    chosen, turned_away = select(samples, names, teach)
    kept.append([(s, False) for s in chosen])
    rejected.update(turned_away)
    counts["first_pass_correct"] += sum(s.scored.correct for s in samples)
  counts["first_pass_samples"] = sum(len(samples) for samples in first)
  spent = [s for samples in first for s in samples]
  retry = [n for n, chosen in enumerate(kept) if not chosen] if teach.rationalise else []
  if retry:
    hinted = sample_pass(sampler, params, tokenizer, [examples[n] for n in retry],
                         [hinted_question(examples[n]) for n in retry], jax.random.fold_in(key, 1), teach)
    for n, samples in zip(retry, hinted):
      chosen, turned_away = select(samples, names, teach)
      kept[n] = [(s, True) for s in chosen]
      rejected.update(turned_away)
      spent += samples
  provenance = {"teacher": teacher, "seed": config.seed,
                "sampling": {"samples": teach.samples, "temperature": teach.temperature, "top_k": teach.top_k,
                             "top_p": teach.top_p, "max_new_tokens": teach.max_new_tokens}}
  # teach.confidence: a share of the first pass, which read the question alone (a hinted pass agrees with its hint)
  records = [make_record(example, s, index, provenance, names, rationalised,
                         agreement(s, samples) if teach.confidence else None)
             for (index, example), chosen, samples in zip(questions, kept, first) for s, rationalised in chosen]
  counts.update(samples=len(spent), teacher_tokens=sum(s.tokens for s in spent), records=len(records),
                questions_covered=sum(bool(chosen) for chosen in kept), questions_retried=len(retry),
                rationalised=sum(r["provenance"]["rationalised"] for r in records))
  return records, {**{k: int(counts[k]) for k in COUNTS}, "rejected": dict(rejected)}


def agreement(sample: Sample, samples: Sequence[Sample]) -> tuple[int, int]:
  """(how many of `samples` answer what `sample` answers (its vote key, as `consistent` compares), len(samples));
  an unfinished or unparsed sample agrees with none."""
  return sum(usable(s) and s.scored.answer == sample.scored.answer for s in samples), len(samples)


def confident_answer(answer: str, agreeing: int, total: int) -> tuple[str, float]:
  """(the answer ending with the line "confidence: c", c): c = agreeing / total to 2 decimals. A confidence line
  the teacher wrote itself is replaced, since two such lines state no confidence (stated_confidence)."""
  confidence = round(agreeing / total, 2)
  return f"{split_confidence(answer)[0]}\nconfidence: {confidence:.2f}", confidence


def make_record(example: Example, sample: Sample, question_index: int, provenance: dict, names: Sequence[str],
                rationalised: bool, agreeing: tuple[int, int] | None = None) -> dict:
  """One line of the dataset: the question (never the hint), the teacher's rationale and answer, and where
  they came from. `agreeing` (teach.confidence: see `agreement`) adds the confidence line and says so in the
  provenance."""
  answer, stated = sample.answer, {}
  if agreeing is not None:
    answer, confidence = confident_answer(sample.answer, *agreeing)
    stated = {"confidence": {"stated": confidence, "agreeing": agreeing[0], "samples": agreeing[1]}}
  return {"question": example.question, "rationale": sample.rationale, "answer": answer,
          "provenance": {**provenance, "question_index": question_index, "sample_index": sample.index,
                         "tokens": sample.tokens, "filters_passed": list(names), "rationalised": rationalised,
                         **stated}}


# ------------------------------------------------------------------------------------------ files


def chunk_path(workdir: str, chunk: int) -> str:
  return os.path.join(workdir, CHUNKS, f"{chunk:06d}.jsonl")


def counts_path(workdir: str, chunk: int) -> str:
  return os.path.join(workdir, CHUNKS, f"{chunk:06d}.counts.json")


def holds_teacher_data(workdir: str) -> bool:
  chunks = os.path.join(workdir, CHUNKS)
  return files.isfile(os.path.join(workdir, DATA_FILE)) or bool(files.listdir(chunks))


def check_workdir(workdir: str, wanted: dict) -> dict | None:
  """The summary of a finished run of these settings in `workdir`, None when there is work to do; ConfigError
  when the workdir holds records of other settings (or of no teach run), before anything is written."""
  saved = read_json_or_none(os.path.join(workdir, IDENTITY_FILE))
  if saved is None:
    if holds_teacher_data(workdir):
      raise ConfigError(f"--workdir {workdir} holds {DATA_FILE} or {CHUNKS}/ but no {IDENTITY_FILE}, so no teach "
                        "run of these settings wrote them; rr never overwrites them: use a new --workdir")
    return None
  if saved != wanted:
    changed = sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))
    raise ConfigError(f"--workdir {workdir} holds teacher data of another config (it differs in "
                      f"{', '.join(changed)}: see {IDENTITY_FILE}); one dataset never mixes two configs' records: "
                      "use a new --workdir, or run that config again to finish it")
  summary = read_json_or_none(os.path.join(workdir, "summary.json"))
  return summary if isinstance(summary, dict) and summary.get("finished") is True else None


def done_counts(workdir: str, chunk: int) -> dict | None:
  """The counts of a chunk already on disk, None when it is still to sample."""
  if not files.isfile(chunk_path(workdir, chunk)):
    return None
  counts = read_json_or_none(counts_path(workdir, chunk))  # written before the records, so present when they are
  if not isinstance(counts, dict):
    raise ConfigError(f"{counts_path(workdir, chunk)} is missing or unreadable though {chunk_path(workdir, chunk)} "
                      "exists; the chunks were changed by hand: use a new --workdir")
  return counts


def write_tfds(workdir: str, name: str) -> None:
  """data.jsonl as TFDS split "train" in WORKDIR/tfds/<name>: the examples `python -m rr.data.prepare --format
  rationale` writes from it (task "", so `data.source=tfds, data.format=rationale` reads them), moved there
  whole, so a kill leaves none or all of it."""
  from rr.data.tfds_builder import write_dataset  # imports tensorflow_datasets: only when asked for

  examples = load_jsonl(os.path.join(workdir, DATA_FILE))
  target = os.path.join(workdir, "tfds", name)
  if os.path.isdir(target):  # written by this run before a kill: the same records (the identity matched)
    return
  staging = os.path.join(workdir, "tfds", f".staging.{os.getpid()}")
  write_dataset(name, staging, {"train": examples}, description="rr teacher data (python -m rr.main, teach)")
  os.replace(os.path.join(staging, name), target)
  os.rmdir(staging)


# ------------------------------------------------------------------------------------------ the run


@TRAINERS.register("teach")
def run(config, workdir: str, should_stop: Callable[[int], bool] | None = None) -> dict:
  """Samples, filters and writes the dataset into `workdir`; returns the summary. `should_stop(n)`, called after
  each chunk this run samples with the number of chunks done, ends the run there as Ctrl-C would."""
  start = time.time()
  # ---------------------------------------------------------------- config and inputs
  names = check_config(config)
  teacher = teacher_path(config)
  inputs = load_inputs(config)
  tokenizer, train = inputs.tokenizer, inputs.train
  wanted = identity(config, teacher)
  finished = check_workdir(workdir, wanted)
  writes = jax.process_index() == 0
  if finished is not None:
    print(f"rr: {workdir} holds this config's finished teacher data; not sampled again", file=sys.stderr)
    if writes:
      save_run_config(config, workdir)
    return finished
  # ---------------------------------------------------------------- teacher and sampler
  teach = config.teach
  check_prompt_lengths(tokenizer, train, teach.rationalise, DEFAULT_PROMPT_BUCKETS[-1])
  mesh = build_mesh(config, teach.questions_per_chunk * teach.samples,
                    "config.teach.questions_per_chunk * config.teach.samples")
  frozen = load_frozen(teacher, mesh, vocab_size=tokenizer.vocab_size, dtype=teach.teacher_dtype,
                       what="config.teach.teacher")
  sampler = Sampler(frozen.model_cfg, eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id, mesh=mesh)
  if writes:
    files.makedirs(os.path.join(workdir, CHUNKS))
    save_run_config(config, workdir)
    files.write_atomic(os.path.join(workdir, IDENTITY_FILE), json.dumps(wanted, indent=2, sort_keys=True) + "\n")
  # ---------------------------------------------------------------- chunks
  per_chunk = teach.questions_per_chunk
  num_chunks = -(-len(train) // per_chunk)
  counts = [done_counts(workdir, c) for c in range(num_chunks)]
  done = sum(c is not None for c in counts)
  if done:
    print(f"rr: resuming teacher data in {workdir}: {done} of {num_chunks} chunks on disk", file=sys.stderr)
  with StopRequest() as stop, tqdm(total=num_chunks, initial=done, desc="teach", dynamic_ncols=True,
                                   file=sys.stderr, mininterval=2.0) as bar:
    for c in range(num_chunks):
      if counts[c] is not None:
        continue
      t = time.time()
      questions = [(i, train[i]) for i in range(c * per_chunk, min((c + 1) * per_chunk, len(train)))]
      records, counts[c] = sample_chunk(sampler, frozen.params, tokenizer, questions, chunk_key(config.seed, c),
                                        config, teacher)
      counts[c]["seconds"] = time.time() - t
      if writes:
        files.write_atomic(counts_path(workdir, c), json.dumps(counts[c], sort_keys=True) + "\n")
        files.write_atomic(chunk_path(workdir, c), "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
      done += 1
      bar.update(1)
      stop_now = stop.agreed()  # on every chunk: each process of a job stops after the same one
      if done < num_chunks and (stop_now or (should_stop is not None and should_stop(done))):
        break
  interrupted = done < num_chunks
  # ---------------------------------------------------------------- dataset and summary
  summary = summarize([c for c in counts if c is not None], reasons(teach, names), start)
  summary["finished"] = not interrupted
  if interrupted:
    print(f"rr: stopped after {done} of {num_chunks} chunks; they are saved in {os.path.join(workdir, CHUNKS)}. "
          "Run the same command again to resume.", file=sys.stderr)
  elif writes:
    assemble(workdir, num_chunks, teach.tfds_name)
    print(f"rr: wrote {summary['records']} records for {summary['questions_covered']} of {summary['questions']} "
          f"questions to {os.path.join(workdir, DATA_FILE)} ({summary['teacher_tokens']} teacher tokens, teacher "
          f"accuracy {summary['teacher_accuracy']:.3f})", file=sys.stderr)
  writer = MetricWriter(workdir, enabled=writes)
  writer.write_summary(summary)
  writer.close()
  return summary


def check_prompt_lengths(tokenizer, train: Sequence[Example], rationalise: bool, longest: int) -> None:
  """DataError before any sampling when a prompt (or its hinted one) is longer than the sampler takes."""
  questions = [e.question for e in train] + ([hinted_question(e) for e in train] if rationalise else [])
  for question, prompt in zip(questions, encode_prompts(tokenizer, questions)):
    if len(prompt) > longest:
      raise DataError(f"train question {question[:60]!r} makes a prompt of {len(prompt)} tokens, more than the "
                      f"sampler's longest prompt bucket ({longest}); shorten it or drop it from the data")


def summarize(chunk_counts: Sequence[dict], rejections: Sequence[str], start: float) -> dict:
  """The run's summary from the counts of the chunks done (this run's and those on disk before)."""
  total = collections.Counter()
  rejected = collections.Counter({reason: 0 for reason in rejections})
  for counts in chunk_counts:
    total.update({k: counts[k] for k in COUNTS})
    rejected.update(counts["rejected"])
  accuracy = total["first_pass_correct"] / max(total["first_pass_samples"], 1)
  return {"wall_seconds": time.time() - start, "chunks": len(chunk_counts),
          "sampling_seconds": float(sum(c.get("seconds", 0.0) for c in chunk_counts)),
          **{k: int(total[k]) for k in COUNTS if not k.startswith("first_pass")},
          "teacher_accuracy": accuracy, "eval/accuracy": accuracy,
          **{f"rejected/{reason}": int(n) for reason, n in rejected.items()}}


def assemble(workdir: str, num_chunks: int, tfds_name: str) -> None:
  """WORKDIR/data.jsonl from the chunks in order, then its TFDS copy when teach.tfds_name asks for one."""
  text = "".join(files.read_text(chunk_path(workdir, c)) for c in range(num_chunks))
  files.write_atomic(os.path.join(workdir, DATA_FILE), text)
  if tfds_name and text:
    write_tfds(workdir, tfds_name)
  elif tfds_name:
    print(f"rr: no records were kept, so no TFDS dataset {tfds_name!r} was written", file=sys.stderr)
