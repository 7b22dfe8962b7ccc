"""Benchmark records (GSM8K, MATH, multiple choice) from JSONL and Parquet, their errors, and their verifiers."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rr import rewards
from rr.config import apply_overrides, base_config
from rr.data import DataError, load_examples, load_jsonl, load_records
from rr.eval.run import assemble
from rr.eval.scoring import score
from rr.rewards.builtin import chain_checker, is_correct, step_checker, verifier
from rr.tasks import Example, get_task
from rr.data.inputs import load_inputs


def write(tmp_path, kind, records, name="data"):
  """records as tmp_path/name.jsonl (one JSON object per line) or tmp_path/name.parquet (one row each)."""
  path = tmp_path / f"{name}.{kind}"
  if kind == "jsonl":
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
  else:  # every column in every row (from_pylist takes its columns from the first row), null where absent
    columns = list(dict.fromkeys(key for r in records for key in r))
    pq.write_table(pa.Table.from_pylist([{key: r.get(key) for key in columns} for r in records]), str(path))
  return str(path)


KINDS = ["jsonl", "parquet"]

GSM8K = [{"question": "Natalia sold 48 clips in April and half as many in May. How many in all?",
          "answer": "In May she sold 48/2 = <<48/2=24>>24 clips.\nIn all 48+24 = <<48+24=72>>72 clips.\n#### 72"},
         {"question": "Big?", "answer": "It is 1000+234 = <<1000+234=1234>>1,234\n#### 1,234"}]
# A Parquet column has one type, so each list keeps one type per field (MATH's "Level 2", MATH-500's 5).
MATH = [{"problem": "What is $1/2 + 1/4$?", "solution": "We get $\\frac{2}{4}+\\frac14=\\boxed{\\frac{3}{4}}$.",
         "level": "Level 2", "type": "Prealgebra"},
        {"problem": "Odd one.", "solution": "Hmm, $\\boxed{1}$.", "level": "Level ?"}]
MATH500 = [{"problem": "Solve $x+1=3$.", "solution": "So $x = \\boxed{2}$.", "answer": "2", "level": 5}]
CHOICE = [{"question": "2+2?", "choices": ["3", "4", "5"], "answer": 1, "explanation": "2+2 is 4."},
          {"question": "Sky?", "choices": ["red", "blue", "green", "pink"], "answer": 3}]
LETTERED = [{"question": "Sky?", "choices": ["red", "blue"], "answer": "b"}]
ARC = [{"question": "Which is a gas?", "choices": {"text": ["ice", "steam", "rock"], "label": ["1", "2", "3"]},
        "answerKey": "2"},
       {"question": "Which is hot?", "choices": {"text": ["sun", "snow"], "label": ["A", "B"]}, "answerKey": "A",
        "rationale": "The sun burns."}]


@pytest.mark.parametrize("kind", KINDS)
def test_gsm8k(tmp_path, kind):
  examples = load_examples(kind, "gsm8k", write(tmp_path, kind, GSM8K))
  assert examples == [
      Example(question=GSM8K[0]["question"], rationale="In May she sold 48/2 = 24 clips.\nIn all 48+24 = 72 clips.",
              answer="72", task="gsm8k"),
      Example(question="Big?", rationale="It is 1000+234 = 1,234", answer="1234", task="gsm8k")]


@pytest.mark.parametrize("kind", KINDS)
def test_math(tmp_path, kind):
  examples = load_examples(kind, "math", write(tmp_path, kind, MATH))
  examples += load_examples(kind, "math", write(tmp_path, kind, MATH500, "math500"))
  assert [(e.answer, e.difficulty, e.task) for e in examples] == [("\\frac{3}{4}", 2, "math"), ("1", 0, "math"),
                                                                 ("2", 5, "math")]
  assert examples[0].question == "What is $1/2 + 1/4$?" and examples[0].rationale == MATH[0]["solution"]


def test_math_explicit_answer_wins_over_the_box(tmp_path):
  record = {"problem": "p", "solution": "\\boxed{0.5}", "answer": "\\frac12"}
  (example,) = load_examples("jsonl", "math", write(tmp_path, "jsonl", [record]))
  assert example.answer == "\\frac12"
  (bare,) = load_examples("jsonl", "math", write(tmp_path, "jsonl", [{"problem": "p", "answer": "3"}], "bare"))
  assert (bare.answer, bare.rationale) == ("3", "")


@pytest.mark.parametrize("kind", KINDS)
def test_choice_lists_and_arc_labels(tmp_path, kind):
  listed = load_examples(kind, "choice", write(tmp_path, kind, CHOICE, "list"))
  assert listed == [
      Example(question="2+2?\nA. 3\nB. 4\nC. 5", rationale="2+2 is 4.", answer="B", task="choice",
              meta=("A", "B", "C")),
      Example(question="Sky?\nA. red\nB. blue\nC. green\nD. pink", rationale="", answer="D", task="choice",
              meta=("A", "B", "C", "D"))]
  assert [e.answer for e in load_examples(kind, "choice", write(tmp_path, kind, LETTERED, "letters"))] == ["B"]
  arc = load_examples(kind, "choice", write(tmp_path, kind, ARC, "arc"))
  assert arc == [
      Example(question="Which is a gas?\nA. ice\nB. steam\nC. rock", rationale="", answer="B", task="choice",
              meta=("A", "B", "C")),
      Example(question="Which is hot?\nA. sun\nB. snow", rationale="The sun burns.", answer="A", task="choice",
              meta=("A", "B"))]


def test_rationale_format_from_parquet_equals_jsonl_and_nulls_are_absent(tmp_path):
  records = [{"question": "1+2", "answer": "3", "rationale": "1+2=3"}, {"question": "q", "answer": "a",
                                                                         "rationale": None}]
  from_parquet = load_examples("parquet", "rationale", write(tmp_path, "parquet", records))
  assert from_parquet == [Example("1+2", "1+2=3", "3"), Example("q", "", "a")]
  assert load_examples("jsonl", "rationale", write(tmp_path, "jsonl", records[:1])) == from_parquet[:1]
  assert load_records(write(tmp_path, "parquet", records, "r"))[1].data == {"question": "q", "answer": "a"}


def test_jsonl_rationale_reads_as_load_jsonl(tmp_path):
  path = write(tmp_path, "jsonl", [{"question": "q", "answer": "a", "rationale": "r"}])
  assert load_examples("jsonl", "rationale", path) == load_jsonl(path) == [Example("q", "r", "a")]


BAD = [
    ("gsm8k", {"answer": "#### 1"}, "missing field 'question'.*\"question\" and \"answer\""),
    ("gsm8k", {"question": "q", "answer": "72"}, "field 'answer' has no '####'"),
    ("gsm8k", {"question": "q", "answer": "so #### "}, "field 'answer' has nothing after '####'"),
    ("gsm8k", {"question": "q", "answer": 72}, "field 'answer' must be a string.*quote it"),
    ("math", {"solution": "\\boxed{1}"}, "missing field 'problem'"),
    ("math", {"problem": "p"}, "missing field 'solution'"),
    ("math", {"problem": "p", "solution": "no box"}, "'solution' has no \\\\boxed.*no 'answer' field"),
    ("math", {"problem": "p", "solution": "\\boxed{}"}, "final answer is empty"),
    ("math", {"problem": "p", "answer": "1", "level": "hard"}, "field 'level' must be like \"Level 3\""),
    ("choice", {"choices": ["a", "b"], "answer": 0}, "missing field 'question'"),
    ("choice", {"question": "q", "answer": 0}, "missing field 'choices'"),
    ("choice", {"question": "q", "choices": ["a", "b"]}, "missing field 'answer'.*answerKey"),
    ("choice", {"question": "q", "choices": "a b", "answer": 0}, "field 'choices' must be a list"),
    ("choice", {"question": "q", "choices": ["a"], "answer": 0}, "'choices' has 1 entries; give between 2"),
    ("choice", {"question": "q", "choices": ["a", ["b"]], "answer": 0}, "choice 1 in field 'choices'"),
    ("choice", {"question": "q", "choices": {"text": ["a", "b"], "label": ["A"]}, "answerKey": "A"},
     "2 texts but 1 labels"),
    ("choice", {"question": "q", "choices": {"text": ["a", "b"]}, "answerKey": "A"}, "without \"text\" and \"label\""),
    ("choice", {"question": "q", "choices": ["a", "b"], "answer": 2}, "'answer' is 2, not a 0-based index.*0..1"),
    ("choice", {"question": "q", "choices": ["a", "b"], "answer": "C"}, "'answer' is 'C'.*a letter A-B"),
    ("choice", {"question": "q", "choices": {"text": ["a", "b"], "label": ["1", "2"]}, "answerKey": "3"},
     "'answerKey' is '3'.*labels \\['1', '2'\\]"),
    ("choice", {"question": "q", "choices": ["a", "b"], "answer": True}, "'answer' is True"),
]


@pytest.mark.parametrize("format, record, pattern", BAD)
def test_malformed_jsonl_record_names_file_line_and_field(tmp_path, format, record, pattern):
  good = {"gsm8k": GSM8K[0], "math": MATH[0], "choice": CHOICE[0]}[format]
  path = write(tmp_path, "jsonl", [good, record, good])
  with pytest.raises(DataError, match=pattern) as info:
    load_examples("jsonl", format, path)
  assert f"{path}, line 2:" in str(info.value)


@pytest.mark.parametrize("format, record, pattern", [BAD[1], BAD[6], BAD[18]])
def test_malformed_parquet_row_names_file_and_row(tmp_path, format, record, pattern):
  good = {"gsm8k": GSM8K[0], "math": MATH[0], "choice": LETTERED[0]}[format]  # same column types as `record`
  path = write(tmp_path, "parquet", [good, good, record], "bad")
  with pytest.raises(DataError, match=pattern) as info:
    load_examples("parquet", format, path)
  assert f"{path}, row 2:" in str(info.value)


@pytest.mark.parametrize("kind", KINDS)
def test_empty_and_missing_files(tmp_path, kind):
  empty = tmp_path / f"empty.{kind}"
  if kind == "jsonl":
    empty.write_text("\n\n")
  else:
    pq.write_table(pa.table({"question": pa.array([], pa.string()), "answer": pa.array([], pa.string())}), str(empty))
  with pytest.raises(DataError, match=f"{empty}.*is empty; the 'gsm8k' format needs.*\"question\" and \"answer\""):
    load_examples(kind, "gsm8k", str(empty))
  with pytest.raises(DataError, match=f"nope.{kind}' does not exist"):
    load_examples(kind, "math", str(tmp_path / f"nope.{kind}"))


def test_unreadable_parquet_and_unknown_extension(tmp_path):
  fake = tmp_path / "fake.parquet"
  fake.write_text("not parquet")
  with pytest.raises(DataError, match="could not read Parquet file.*fake.parquet.*is it a Parquet file"):
    load_examples("parquet", "gsm8k", str(fake))
  with pytest.raises(DataError, match="data.csv.*name it .jsonl.*or .parquet"):
    load_records(str(tmp_path / "data.csv"))


@pytest.mark.parametrize("kind", KINDS)
def test_load_inputs_reads_each_source_and_format(tmp_path, kind):
  config = base_config()
  apply_overrides(config, [("data.source", kind), ("data.format", "choice"),
                           ("data.train_path", write(tmp_path, kind, ARC, "train")),
                           ("data.test_path", write(tmp_path, kind, CHOICE, "test"))])
  inputs = load_inputs(config)
  assert [e.answer for e in inputs.train] == ["B", "A"] and [e.answer for e in inputs.test] == ["B", "D"]
  assert all(e.task == "choice" for e in inputs.train + inputs.test)


# ------------------------------------------------------------------------------------------ verifiers

G = Example(question="q", rationale="", answer="72", task="gsm8k")
M = Example(question="q", rationale="", answer="\\frac{3}{4}", task="math")
C = Example(question="q\nA. 3\nB. 4\nC. 5", rationale="", answer="B", task="choice", meta=("A", "B", "C"))


@pytest.mark.parametrize("example, completion, right", [
    (G, "<think>48/2=24</think>72", True),
    (G, "<think>x</think>#### 72", True),
    (G, "<think>x</think>72.0\nconfidence: 0.9", True),  # the confidence line is not part of the answer
    (G, "<think>x</think>72 apples", False),
    (G, "<think>x</think>27", False),
    (G, "<think>#### 72</think>27", False),  # only the answer after </think> counts
    (M, "<think>x</think>0.75", True),
    (M, "<think>x</think>so \\boxed{\\dfrac34}", True),
    (M, "<think>x</think>3/5", False),
    (C, "<think>x</think>The answer is (B).", True),
    (C, "<think>x</think>B", True),
    (C, "<think>x</think>A or B", False),
    (C, "<think>x</think>D", False),  # not one of this question's letters
    (G, "<think>so #### 72", False),  # an unclosed <think> has no answer, whatever it holds
    (M, "<think>so \\boxed{0.75}", False),
    (C, "<think>The answer is B", False),
    (G, "72", True),  # no <think> opened: the whole text is the answer
])
def test_is_correct_verifies_benchmark_tasks(example, completion, right):
  """The reward's verdict, and the evaluation's (the two read one answer, so they always agree)."""
  assert is_correct(completion, example) is right
  assert score(example, completion, 1).correct is right


def test_one_registry_for_every_kind_of_task():
  addition = get_task("addition").generate(np.random.default_rng(0), 3)  # 865+673=1538
  assert is_correct("<think>x</think>1538", addition) and not is_correct("<think>x</think>1539", addition)
  user = Example(question="q", rationale="", answer="the cat")
  assert is_correct("<think>x</think> the  cat", user) and not is_correct("<think>x</think>The cat", user)
  assert verifier("")("the cat", user) and not verifier("math")("1", M)
  assert step_checker("") is None and step_checker("gsm8k") is None and step_checker("choice") is None
  assert step_checker("addition") is not None
  assert chain_checker("") is None and chain_checker("math") is None and chain_checker("choice") is None
  assert chain_checker("addition")(addition.rationale, addition)


def test_score_and_step_reward_on_benchmark_tasks():
  s = score(M, "<think>a\nb</think>\\boxed{0.75}", 9)
  assert (s.correct, s.steps_ok, s.answer, s.length) == (True, None, "3/4", 9)
  assert score(C, "<think>a</think>C", 3).correct is False
  steps = rewards.step_correctness()([""] * 3, ["<think>a\nb</think>72", "<think>a</think>B", "x"], [G, C, M])
  assert list(steps) == [0.0, 0.0, 0.0]


def test_answers_written_differently_share_one_vote():
  """maj@k votes on what an answer means for benchmark data, not on how it is written."""
  keys = lambda example, answers: [score(example, f"<think>x</think>{a}", 3).answer for a in answers]  # noqa: E731
  assert keys(C, ["B", "(B)", "The answer is B.", "C", "no idea"]) == ["B", "B", "B", "C", None]
  assert keys(M, ["0.75", "\\frac{3}{4}", "$\\dfrac34$", "\\boxed{0.750}", "x+1", "x + 1"]) == \
      ["3/4", "3/4", "3/4", "3/4", "x+1", "x+1"]
  assert keys(G, ["#### 1,234", "1234", "1234.0", "72"]) == ["1234", "1234", "1234", "72"]


def test_assemble_reports_choice_confusion_and_no_step_accuracy():
  d = Example(question="q", rationale="", answer="A", task="choice", meta=("A", "B", "C", "D"))
  examples = [C, C, d, d]
  texts = ["<think>x</think>B", "<think>x</think>(C)", "<think>x</think>A.", "<think>x</think>no idea"]
  greedy = [score(e, t, 3) for e, t in zip(examples, texts)]
  out = assemble(examples, greedy, [[g] for g in greedy], [1])
  assert "step_accuracy" not in out and "cot_pass@1" not in out
  assert out["accuracy"] == 0.5
  confusion = out["choice_confusion"]
  assert confusion["accuracy"] == 0.5
  assert confusion["confusion"] == {
      "A": {"A": 1, "B": 0, "C": 0, "D": 0, "unparsed": 1},
      "B": {"A": 0, "B": 1, "C": 1, "D": 0, "unparsed": 0},
      "C": {"A": 0, "B": 0, "C": 0, "D": 0, "unparsed": 0},
      "D": {"A": 0, "B": 0, "C": 0, "D": 0, "unparsed": 0}}
  assert "choice_confusion" not in assemble([G], [score(G, "72", 1)], [[score(G, "72", 1)]], [1])
