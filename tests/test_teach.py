"""Teacher data (trainer "teach", configs/teach.py): the filters on completions a teacher could write, STaR's
hint, provenance, the data.rationales_path loader, resume after SIGKILL, a Hugging Face teacher, bad input."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from rr import models, train
from rr.checkpoint import CheckpointError
from rr.config import ConfigError, apply_overrides, base_config, load_config, read_run_config, save_run_config
from rr.data import DataError, format_prompt, load_examples
from rr.data.inputs import load_inputs
from rr.data.tfds_source import read_split
from rr.data.tokenizers import CharTokenizer
from rr.registry import RegistryError
from rr.sampler import SampleOutput
from rr.tasks import Example
from rr.train.teach import FILTERS, hinted_question, sample_chunk, summarize
from test_hf_run import save_tokenizer
from test_kd import _teacher_workdir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEACH = os.path.join(ROOT, "configs", "teach.py")
TOK = CharTokenizer()
SUM = Example(question="478+256", rationale="8+6+0=14\n7+5+1=13\n4+2+1=07", answer="734", difficulty=3,
              task="addition", meta=(478, 256))
RIGHT = "<think>8+6+0=14\n7+5+1=13\n4+2+1=07</think>734"  # 31 char tokens


class ScriptedTeacher:
  """A sampler whose completion j of a prompt is `script(prompt text, j)` -> (text, ended). ended=False is a
  completion the budget cut: its first max_new_tokens tokens and no eos, as the real sampler returns."""

  def __init__(self, script):
    self.script, self.prompts = script, []

  def __call__(self, params, prompts, *, max_new_tokens, strategy, rng, num_samples):
    rows = len(prompts) * num_samples
    tokens = np.full((rows, max_new_tokens), TOK.pad_id, np.int32)
    lengths = np.zeros((rows,), np.int32)
    for i, prompt in enumerate(prompts):
      self.prompts.append(TOK.decode(prompt))
      for j in range(num_samples):
        text, ended = self.script(self.prompts[-1], j)
        ids = TOK.encode(text)
        assert not ended or len(ids) < max_new_tokens, "an ended completion and its eos must fit the budget"
        assert ended or len(ids) >= max_new_tokens, "only the budget stops a completion without eos"
        ids = ids + [TOK.eos_id] if ended else ids[:max_new_tokens]
        tokens[i * num_samples + j, :len(ids)] = ids
        lengths[i * num_samples + j] = len(ids)
    zeros = np.zeros((rows, max_new_tokens), np.float32)
    return SampleOutput(tokens=tokens, lengths=lengths, logprobs=zeros, model_logprobs=zeros,
                        prompt_index=np.repeat(np.arange(len(prompts), dtype=np.int32), num_samples))


def teach_config(**teach):
  c = base_config()
  c.trainer = "teach"
  c.teach.teacher = "/teacher"
  c.teach.update(teach)
  return c


def chunk(completions, config, questions=((0, SUM),)):
  """(records, counts) of one chunk whose teacher writes completions[j] (text, ended) as sample j."""
  teacher = ScriptedTeacher(lambda prompt, j: completions[j])
  return sample_chunk(teacher, None, TOK, list(questions), jax.random.key(0), config, "/teacher")


def kept(records):
  return [(r["provenance"]["sample_index"], r["rationale"], r["answer"]) for r in records]


def total_rejected(counts):
  return sum(counts["rejected"].values())


# ------------------------------------------------------------------------------------------ filters


def test_correct_keeps_finished_right_answers_and_nothing_a_policy_could_game():
  completions = [
      ("<think>7+5+1=13</think>734", True),  # right answer (the filter reads answers, not chains)
      (RIGHT, False),  # reads as right, but the budget cut it before its eos: the answer may be unfinished
      ("<think>4+2+1=07</think>0734", True),  # padded: the value is right, and the record keeps its text
      ("<think>8+6+0=14</think>734 735", True),  # two answers
      ("<think>8+6+0=14</think>734</think>735", True),  # two answers: the last is read, and it is wrong
      ("<think>8+6+0=14\n7+5+1=13 734", True),  # the think block is never closed: no answer to read
      ("<think>x</think>734<think>", True),  # a think opened after the answer: unparsed too
  ]
  records, counts = chunk(completions, teach_config(samples=7, max_new_tokens=31, filters="correct"))
  assert kept(records) == [(0, "7+5+1=13", "734"), (2, "4+2+1=07", "0734")]
  assert counts["rejected"] == {"unfinished": 1, "unparsed": 2, "correct": 2}
  assert counts["samples"] == 7 == len(records) + total_rejected(counts)
  assert counts["first_pass_correct"] == 3  # the cut one's text is right: accuracy counts it, records do not
  assert counts["teacher_tokens"] == sum(len(TOK.encode(t)) + ended for t, ended in completions)
  assert [r["provenance"]["tokens"] for r in records] == [len(TOK.encode(completions[j][0])) + 1 for j in (0, 2)]


def test_correct_on_user_data_is_the_exact_match_of_evaluation(tmp_path):
  path = tmp_path / "mine.jsonl"
  path.write_text(json.dumps({"question": "Six times seven?", "answer": "42"}) + "\n")
  config = teach_config(samples=3, filters="correct")
  config.data.source, config.data.train_path = "jsonl", str(path)
  [example] = load_inputs(config).train
  records, _ = chunk([("<think>6*7</think> 42 ", True), ("<think>6*7</think>042", True), ("<think>x</think>4 2", True)],
                     config, [(0, example)])
  assert kept(records) == [(0, "6*7", "42")]  # no task: no reading of values, "042" is another answer


def test_consistent_keeps_the_majority_answer_even_when_it_is_wrong_and_nothing_on_a_tie():
  wrong_majority = [("<think>a</think>735", True), ("<think>b</think>735", True), ("<think>c</think>734", True)]
  records, _ = chunk(wrong_majority, teach_config(samples=3, filters="consistent"))
  assert kept(records) == [(0, "a", "735"), (1, "b", "735")]  # self-consistency is no verifier
  records, counts = chunk(wrong_majority, teach_config(samples=3, filters="correct,consistent"))
  assert records == [] and counts["rejected"]["correct"] == 2 and counts["rejected"]["consistent"] == 1
  # "0734" votes with "734"; a cut completion and an unparsed one do not vote, so 734 and 735 tie: none kept.
  tie = [("<think>a</think>735", True), ("<think>b</think>735", True), ("<think>c</think>0734", True),
         ("<think>d</think>734", True), ("<think>" + "e" * 11 + "</think>734", False), ("<think>734", True)]
  records, counts = chunk(tie, teach_config(samples=6, max_new_tokens=16, filters="consistent"))
  assert records == [] and counts["rejected"] == {"unfinished": 1, "unparsed": 1, "consistent": 4}
  # (Had the cut one voted, 734 would have won.) One more finished 734 breaks the tie.
  records, _ = chunk(tie[:4] + [("<think>f</think>734", True)], teach_config(samples=5, filters="consistent"))
  assert kept(records) == [(2, "c", "0734"), (3, "d", "734"), (4, "f", "734")]


def test_length_bounds_count_generated_tokens_with_the_eos():
  texts = ["<think></think>" + "1" * n for n in (1, 2, 7, 8)]  # 2 + n tokens, + eos: 4, 5, 10, 11
  config = teach_config(samples=4, filters="length", min_tokens=5, max_tokens=10)
  records, counts = chunk([(t, True) for t in texts], config)
  assert [r["provenance"]["tokens"] for r in records] == [5, 10] and counts["rejected"]["length"] == 2
  config.teach.min_tokens = 0  # no lower bound
  assert [r["provenance"]["tokens"] for r in chunk([(t, True) for t in texts], config)[0]] == [4, 5, 10]


def test_dedup_drops_whitespace_variants_per_question_and_max_per_question_caps():
  completions = [("<think>8+6+0=14\n7+5+1=13</think>734", True),
                 ("<think> 8+6+0=14  7+5+1=13 </think>  734 ", True),  # the same, other whitespace
                 ("<think>8+6+0=14\n7+5+1=13</think>0734", True)]  # another answer text: kept
  other = Example(question="1+2", rationale="1+2+0=03", answer="3", difficulty=1, task="addition", meta=(1, 2))
  both = [(0, SUM), (5, other)]  # dedup is per question: the other question keeps its own copies
  records, counts = chunk(completions, teach_config(samples=3, filters="dedup"), both)
  assert [(r["provenance"]["question_index"], r["provenance"]["sample_index"]) for r in records] == [
      (0, 0), (0, 2), (5, 0), (5, 2)]
  assert counts["rejected"]["dedup"] == 2 and counts["questions_covered"] == 2
  records, counts = chunk(completions, teach_config(samples=3, filters="dedup", max_per_question=1), both)
  assert [r["provenance"]["sample_index"] for r in records] == [0, 0]
  assert counts["rejected"] == {"unfinished": 0, "unparsed": 0, "dedup": 2, "max_per_question": 2}
  assert counts["samples"] == len(records) + total_rejected(counts)


def test_a_registered_filter_runs_by_name_and_an_unknown_one_is_named():
  @FILTERS.register("short_answer")
  def short_answer(candidates, samples, teach):
    return [len(s.answer) <= 3 for s in candidates]

  try:
    records, _ = chunk([("<think>a</think>0734", True), ("<think>b</think>734", True)],
                       teach_config(samples=2, filters="short_answer"))
    assert kept(records) == [(1, "b", "734")]
  finally:
    FILTERS.unregister("short_answer")
  with pytest.raises(RegistryError, match=r"config.teach.filters: no teacher-data filter 'corect' .*did you mean "
                                          r"'correct'"):
    train.run(teach_config(filters="corect,dedup"), "/nonexistent/never_written")


# ------------------------------------------------------------------------------------------ STaR


def test_star_retries_failed_questions_with_the_answer_as_a_hint_and_stores_them_without_it():
  known = Example(question="1+2", rationale="1+2+0=03", answer="3", difficulty=1, task="addition", meta=(1, 2))
  hopeless = Example(question="5+4", rationale="5+4+0=09", answer="9", difficulty=1, task="addition", meta=(5, 4))

  def script(prompt, j):  # right on "1+2"; on "478+256" only when told the answer; never on "5+4"
    if prompt.startswith("1+2"):
      return f"<think>known {j}</think>3", True
    if "(answer: " in prompt and prompt.startswith("478+256"):
      return f"<think>hinted {j}</think>" + prompt.split("(answer: ")[1].split(")")[0], True
    return "<think>guess</think>0", True

  teacher = ScriptedTeacher(script)
  config = teach_config(samples=2, filters="correct", rationalise=True)
  records, counts = sample_chunk(teacher, None, TOK, [(0, known), (1, SUM), (2, hopeless)], jax.random.key(0),
                                 config, "/teacher")
  hint, other_hint = (format_prompt(hinted_question(e), TOK) for e in (SUM, hopeless))
  assert hint == "478+256 (answer: 734)\n" and teacher.prompts == ["1+2\n", "478+256\n", "5+4\n", hint, other_hint]
  assert [(r["question"], r["rationale"], r["answer"], r["provenance"]["rationalised"]) for r in records] == [
      ("1+2", "known 0", "3", False), ("1+2", "known 1", "3", False),
      ("478+256", "hinted 0", "734", True), ("478+256", "hinted 1", "734", True)]
  assert counts["questions_retried"] == 2 and counts["rationalised"] == 2 and counts["questions_covered"] == 2
  assert counts["samples"] == 10 and counts["first_pass_samples"] == 6 and counts["first_pass_correct"] == 2
  summary = summarize([counts], ["unfinished", "unparsed", "correct"], time.time())
  assert summary["teacher_accuracy"] == summary["eval/accuracy"] == pytest.approx(2 / 6)  # first pass only
  assert summary["rejected/correct"] == 6 and summary["records"] == 4 == summary["samples"] - 6
  with pytest.raises(ConfigError, match=r"rationalise=True needs the 'correct' filter"):
    train.run(teach_config(filters="dedup", rationalise=True), "/nonexistent/never_written")


# ------------------------------------------------------------------------------------------ the loader


def task_config(**data):
  c = base_config()
  c.data.train_size, c.data.test_size, c.eval.num_examples = 8, 4, 4
  c.data.update(data)
  return c


def test_data_seed_fixes_the_questions_across_run_seeds_so_every_seed_reads_one_teachers_data():
  def questions(run_seed, data_seed):
    c = task_config(seed=data_seed)
    c.seed = run_seed
    inputs = load_inputs(c)
    return [e.question for e in inputs.train], [e.question for e in inputs.test]

  assert questions(0, 0) == questions(1, 0) == questions(0, -1)
  assert questions(1, -1) != questions(0, -1)  # -1: the run's seed draws them, as before


def write_records(path, records):
  path.write_text("".join(json.dumps(r) + "\n" for r in records))
  return str(path)


def test_rationales_path_makes_each_record_an_example_of_its_train_question(tmp_path):
  plain = load_inputs(task_config())
  q0, q3 = plain.train[0], plain.train[3]
  records = [{"question": q0.question, "rationale": "r1", "answer": "0" + q0.answer, "provenance": {"seed": 0}},
             {"question": q3.question, "rationale": "r2", "answer": q3.answer},
             {"question": q0.question, "rationale": "r3", "answer": q0.answer}]
  (tmp_path / "teach").mkdir()
  write_records(tmp_path / "teach" / "data.jsonl", records)
  for path in (str(tmp_path / "teach"), str(tmp_path / "teach" / "data.jsonl")):  # a teach workdir or its file
    taught = load_inputs(task_config(rationales_path=path))
    assert [(e.question, e.rationale, e.answer) for e in taught.train] == [
        (q0.question, "r1", "0" + q0.answer), (q3.question, "r2", q3.answer), (q0.question, "r3", q0.answer)]
    assert [(e.task, e.meta, e.difficulty) for e in taught.train] == [(q.task, q.meta, q.difficulty)
                                                                      for q in (q0, q3, q0)]
    assert taught.test == plain.test
  bad = write_records(tmp_path / "bad.jsonl", records[:1] + [{"question": "999+999", "rationale": "", "answer": "1"}])
  with pytest.raises(DataError, match=r"bad.jsonl, line 2: question '999\+999' is not in this run's train split.*"
                                      r"train_size, difficulty.*config.data.seed, else config.seed\) must match the teach run's"):
    load_inputs(task_config(rationales_path=bad))
  with pytest.raises(DataError, match=r"holds no records"):
    load_inputs(task_config(rationales_path=write_records(tmp_path / "empty.jsonl", [])))
  with pytest.raises(DataError, match=r"is a directory without data.jsonl"):
    load_inputs(task_config(rationales_path=str(tmp_path)))
  with pytest.raises(ConfigError, match=r"names a stage, which only a job of stages resolves"):
    load_inputs(task_config(rationales_path="stage:sample_1"))


# ------------------------------------------------------------------------------------------ runs


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
  """A saved nano rr model with the char tokenizer: random weights, so its text is noise."""
  config = load_config(os.path.join(ROOT, "configs", "sft.py") + ":runlocal")
  return _teacher_workdir(config, str(tmp_path_factory.mktemp("teacher")), preset="nano")


# 48 one-question chunks of near-uniform samples (T=50): about a third end with eos within 48 tokens and parse.
NOISE = [("data.train_size", "48"), ("teach.questions_per_chunk", "1"), ("teach.max_new_tokens", "48"),
         ("teach.temperature", "50.0"), ("teach.filters", "length,dedup"), ("teach.max_tokens", "40")]


def command(teacher_dir, workdir):
  return [sys.executable, "-m", "rr.main", "--config", f"{TEACH}:teacher={teacher_dir},runlocal",
          *[f"--config.{k}={v}" for k, v in NOISE], "--workdir", str(workdir)]


def chunk_files(workdir):
  return sorted(p.name for p in (workdir / "chunks").iterdir() if p.name.endswith(".jsonl"))


@pytest.fixture(scope="module")
def killed_and_reference(teacher_dir, tmp_path_factory):
  """`python -m rr.main` runs of one config: an uninterrupted one, and one SIGKILLed once a chunk is on disk,
  started again and sent SIGTERM once it has written another, then started again to the end. All share JAX's
  compilation cache (the first fills it), so the later runs start sampling at once. Returns (reference workdir,
  resumed workdir, chunk files at the kill, at the SIGTERM, and the summary the SIGTERMed run wrote)."""
  root = tmp_path_factory.mktemp("kill")
  reference, resumed = root / "reference", root / "resumed"
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_COMPILATION_CACHE_DIR": str(root / "jax_cache"),
         "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
         "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}

  def to_the_end(workdir):
    done = subprocess.run(command(teacher_dir, workdir), cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

  def interrupt(workdir, after: int, sig) -> int:
    """Starts the run and sends `sig` once more than `after` chunk files exist; returns its exit status."""
    with open(root / "log", "w") as log:
      process = subprocess.Popen(command(teacher_dir, workdir), cwd=ROOT, env=env, stdout=log, stderr=log)
      deadline = time.time() + 240
      while not ((workdir / "chunks").is_dir() and len(chunk_files(workdir)) > after):
        assert process.poll() is None, (root / "log").read_text()[-3000:]
        assert time.time() < deadline, "no chunk was written in time"
        time.sleep(0.002)
      process.send_signal(sig)
      status = process.wait(timeout=120)
    assert not (workdir / "data.jsonl").exists(), "the run finished before the signal; the test stopped nothing"
    return status

  to_the_end(reference)
  assert interrupt(resumed, 0, signal.SIGKILL) == -signal.SIGKILL
  at_kill = chunk_files(resumed)
  assert interrupt(resumed, len(at_kill), signal.SIGTERM) == 0  # as Ctrl-C: the chunk in hand, then a clean stop
  at_term, stopped = chunk_files(resumed), json.loads((resumed / "summary.json").read_text())
  to_the_end(resumed)
  return reference, resumed, at_kill, at_term, stopped


def test_a_run_killed_mid_way_resumes_to_exactly_the_uninterrupted_records(killed_and_reference):
  reference, resumed, at_kill, at_term, stopped = killed_and_reference
  assert 1 <= len(at_kill) < len(at_term) < 48
  assert stopped["finished"] is False and stopped["chunks"] == len(at_term)
  want, got = ((d / "data.jsonl").read_text().splitlines() for d in (reference, resumed))
  assert len(want) >= 5 and got == want  # same lines, same order: none duplicated, none dropped
  keys = [(r["provenance"]["question_index"], r["provenance"]["sample_index"]) for r in map(json.loads, got)]
  assert len(set(keys)) == len(keys)
  summaries = [json.loads((d / "summary.json").read_text()) for d in (reference, resumed)]
  timing = ("wall_seconds", "sampling_seconds")
  assert [{k: v for k, v in s.items() if k not in timing} for s in summaries][0] == {
      k: v for k, v in summaries[1].items() if k not in timing}
  s = summaries[0]
  assert s["finished"] and s["questions"] == 48 and s["samples"] == 96 and s["records"] == len(want)
  assert s["samples"] == s["records"] + sum(v for k, v in s.items() if k.startswith("rejected/"))


def test_records_carry_their_provenance_and_read_as_rationale_data(killed_and_reference, teacher_dir):
  reference = killed_and_reference[0]
  config = read_run_config(str(reference / "config.json"))
  train_split = load_inputs(config).train
  records = [json.loads(line) for line in (reference / "data.jsonl").read_text().splitlines()]
  for r in records:
    p = r["provenance"]
    assert p["teacher"] == os.path.abspath(teacher_dir) and p["seed"] == 0 and p["rationalised"] is False
    assert p["sampling"] == {"samples": 2, "temperature": 50.0, "top_k": 0, "top_p": 1.0, "max_new_tokens": 48}
    assert train_split[p["question_index"]].question == r["question"] and p["sample_index"] in (0, 1)
    assert p["filters_passed"] == ["length", "dedup"] and 1 <= p["tokens"] <= 40
  examples = load_examples("jsonl", "rationale", str(reference / "data.jsonl"))  # data.source=jsonl reads it
  assert [(e.question, e.rationale, e.answer) for e in examples] == [
      (r["question"], r["rationale"], r["answer"]) for r in records]


def test_a_finished_run_is_not_sampled_again_and_another_config_is_refused(killed_and_reference, teacher_dir):
  reference = killed_and_reference[0]
  config = load_config(f"{TEACH}:teacher={teacher_dir},runlocal", NOISE)
  before = {p.name: p.stat().st_mtime_ns for p in (reference / "chunks").iterdir()}
  summary = train.run(config, str(reference))  # returns before any teacher is loaded
  assert summary == json.loads((reference / "summary.json").read_text())
  assert not (reference / "config.2.json").exists()  # the same config: nothing new written
  apply_overrides(config, [("teach.samples", "3")])
  with pytest.raises(ConfigError, match=r"holds teacher data of another config \(it differs in teach.*use a new "
                                        r"--workdir"):
    train.run(config, str(reference))
  assert before == {p.name: p.stat().st_mtime_ns for p in (reference / "chunks").iterdir()}


def test_bad_teach_settings_are_one_error_before_any_work(tmp_path, teacher_dir):
  workdir = tmp_path / "never"
  with pytest.raises(ConfigError, match=r"configs/teach.py needs the teacher"):
    load_config(f"{TEACH}:runlocal")
  for overrides, message in (
      ([("data.rationales_path", "/x")], r"rationales_path='/x' is set in a teach run"),
      ([("teach.filters", "length")], r"'length' but config.teach.min_tokens and max_tokens are both 0"),
      ([("teach.min_tokens", "9"), ("teach.max_tokens", "3")], r"min_tokens=9 exceeds"),
      ([("teach.top_p", "0.0")], r"config.teach: Sampling.top_p must be in \(0, 1\]"),
      ([("teach.tfds_name", "Bad-Name")], r"config.teach.tfds_name: dataset name 'Bad-Name' is not a TFDS name")):
    with pytest.raises(ConfigError, match=message):
      train.run(load_config(f"{TEACH}:teacher={teacher_dir},runlocal", overrides), str(workdir))
  config = load_config(f"{TEACH}:runlocal,teacher=x")
  config.teach.teacher = ""
  with pytest.raises(ConfigError, match=r"the teach trainer needs a teacher"):
    train.run(config, str(workdir))
  assert not workdir.exists()


@pytest.fixture(scope="module")
def hf_teacher(tmp_path_factory):
  """A tiny Qwen2-shaped Hugging Face directory with a chat template (as tests/test_hf_run.py builds one)."""
  path = tmp_path_factory.mktemp("hf") / "tiny-qwen2"
  cfg = models.ModelConfig(vocab_size=288, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4,
                           num_kv_heads=2, qkv_bias=True, tie_embeddings=True, rope_theta=1e4)
  models.to_hf(cfg, jax.device_get(models.init_params(cfg, jax.random.key(1))), str(path))
  save_tokenizer(path)
  return str(path)


def test_configs_teach_samples_a_hugging_face_teacher_with_its_tokenizer_and_writes_tfds(tmp_path, hf_teacher):
  overrides = [("teach.temperature", "50.0"), ("teach.max_new_tokens", "48"), ("teach.filters", "dedup"),
               ("teach.tfds_name", "taught")]
  config = load_config(f"{TEACH}:teacher={hf_teacher},runlocal,samples=4", overrides)
  assert (config.tokenizer.kind, config.tokenizer.path, config.tokenizer.chat_template) == ("hf", hf_teacher, True)
  workdir = tmp_path / "hf_teach"
  summary = train.run(config, str(workdir))
  assert summary["finished"] and summary["chunks"] == 2 and summary["samples"] == 32 and summary["records"] >= 1
  records = [json.loads(line) for line in (workdir / "data.jsonl").read_text().splitlines()]
  assert len(records) == summary["records"] and all(r["provenance"]["teacher"] == hf_teacher for r in records)
  assert sum(r["provenance"]["tokens"] for r in records) <= summary["teacher_tokens"] <= 32 * 48
  tfds = read_split("taught", str(workdir / "tfds"), "train", "rationale")  # data.source=tfds reads it
  assert [(e.question, e.rationale, e.answer) for e in tfds] == [
      (r["question"], r["rationale"], r["answer"]) for r in records]


def test_an_rr_teacher_brings_the_tokenizer_it_was_trained_with(tmp_path, hf_teacher):
  run = tmp_path / "hf_sft_run"
  (run / "checkpoints").mkdir(parents=True)  # an rr workdir (directory_kind "rr") of an SFT run of the HF model
  save_run_config(load_config(os.path.join(ROOT, "configs", "hf_sft.py") + f":model={hf_teacher}"), str(run))
  config = load_config(f"{TEACH}:teacher={run}")
  assert (config.tokenizer.kind, config.tokenizer.path, config.tokenizer.chat_template) == ("hf", hf_teacher, True)
  assert config.teach.teacher == str(run) and config.model.hf_path == ""


def test_a_teacher_of_another_vocabulary_is_refused_before_anything_is_written(tmp_path, teacher_dir, hf_teacher):
  config = load_config(f"{TEACH}:teacher={teacher_dir},runlocal",
                       [("tokenizer.kind", "hf"), ("tokenizer.path", hf_teacher)])  # the char teacher, 261 ids
  workdir = tmp_path / "refused"
  with pytest.raises(CheckpointError, match=r"vocab_size=104, but this run's tokenizer has vocab_size=261"):
    train.run(config, str(workdir))
  assert not workdir.exists()
