"""JSONL user data: good files load in order; every bad file is a DataError naming the path and the line."""

import json

import pytest

from rr.data import DataError, load_jsonl
from rr.errors import UserError
from rr.tasks import Example


def write(tmp_path, lines, name="data.jsonl"):
  path = tmp_path / name
  path.write_text("\n".join(lines), encoding="utf-8")
  return str(path)


def test_loads_examples_in_order_skipping_blank_lines(tmp_path):
  records = [{"question": "1+2", "answer": "3", "rationale": "1+2+0=03"},
             {"question": "héllo?", "answer": "x", "extra": [1, 2]}]
  path = write(tmp_path, [json.dumps(records[0]), "", "   ", json.dumps(records[1], ensure_ascii=False), ""])
  examples = load_jsonl(path)
  assert examples == [Example("1+2", "1+2+0=03", "3"), Example("héllo?", "", "x")]
  assert all(e.task == "" and e.difficulty == 0 for e in examples)


def test_missing_file(tmp_path):
  with pytest.raises(DataError, match="nothere.jsonl.*does not exist"):
    load_jsonl(str(tmp_path / "nothere.jsonl"))


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_empty_file(tmp_path, content):
  path = tmp_path / "empty.jsonl"
  path.write_text(content)
  with pytest.raises(DataError, match="empty.jsonl.*empty"):
    load_jsonl(str(path))


GOOD = json.dumps({"question": "q", "answer": "a"})


@pytest.mark.parametrize("bad_line,pattern", [
    ('{"question": "q", "answer": ', "malformed JSON"),
    ("not json at all", "malformed JSON"),
    ('["question", "answer"]', "JSON object"),
    ('{"answer": "a"}', "missing key 'question'"),
    ('{"question": "q"}', "missing key 'answer'"),
    ('{"question": "q", "answer": 4}', "'answer' must be a string"),
    ('{"question": ["q"], "answer": "a"}', "'question' must be a string"),
    ('{"question": "q", "answer": "a", "rationale": null}', "'rationale' must be a string"),
])
def test_bad_line_names_path_and_line_number(tmp_path, bad_line, pattern):
  path = write(tmp_path, [GOOD, "", GOOD, bad_line, GOOD])  # the bad line is line 4 (blank line 2 counts)
  with pytest.raises(DataError, match=pattern) as info:
    load_jsonl(path)
  assert f"{path}, line 4:" in str(info.value)


def test_data_error_is_a_user_error_and_value_error(tmp_path):
  with pytest.raises(UserError):
    load_jsonl(str(tmp_path / "missing.jsonl"))
  with pytest.raises(ValueError):
    load_jsonl(str(tmp_path / "missing.jsonl"))
