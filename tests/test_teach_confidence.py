"""SaySelf confidence data (teach.confidence): each record's answer ends with "confidence: c", c the share of the
question's k first-pass samples that agree with it, by hand; the line survives records -> SFT completion ->
stated_confidence; bad settings are one error."""

import json

import jax
import numpy as np
import pytest

from rr import rewards, train
from rr.config import ConfigError, base_config
from rr.data.inputs import load_inputs
from rr.data.sft_batches import SFTBatches
from rr.eval.scoring import score
from rr.train.teach import sample_chunk
from test_teach import SUM, TOK, ScriptedTeacher, teach_config

FOUR = [("<think>8+6+0=14</think>734", True),  # the 734 answers: 734 and 0734 have one vote key
        ("<think>4+2+1=07</think>0734", True),
        ("<think>7+5+1=13</think>735", True),
        ("<think>8+6+0=14\n7+5+1=13 734", True)]  # never closes its think: unparsed, agrees with nothing


def chunk(completions, config, questions=((0, SUM),)):
  teacher = ScriptedTeacher(lambda prompt, j: completions[j])
  return sample_chunk(teacher, None, TOK, list(questions), jax.random.key(0), config, "/teacher")


def test_each_record_states_the_share_of_the_k_samples_that_agree_with_its_answer():
  records, _ = chunk(FOUR, teach_config(samples=4, filters="correct", confidence=True))
  # 2 of 4 samples answer 734 (0734 is the same number); the unparsed one counts against
  assert [r["answer"] for r in records] == ["734\nconfidence: 0.50", "0734\nconfidence: 0.50"]
  assert [r["provenance"]["confidence"] for r in records] == [{"stated": 0.5, "agreeing": 2, "samples": 4}] * 2
  records, _ = chunk(FOUR, teach_config(samples=4, filters="", confidence=True))  # no filter: the 735 record too
  assert [r["answer"] for r in records] == ["734\nconfidence: 0.50", "0734\nconfidence: 0.50", "735\nconfidence: 0.25"]
  plain, _ = chunk(FOUR, teach_config(samples=4, filters="correct"))  # off: the records as before
  assert [r["answer"] for r in plain] == ["734", "0734"] and "confidence" not in plain[0]["provenance"]
  # A sample cut at the budget reads as 734 but is not finished, so it does not agree; 2 of 5, and 2/3 rounds
  cut = FOUR + [("<think>8+6+0=14\n7+5+1=13\n4+2+1=07</think>734", False)]
  records, _ = chunk(cut, teach_config(samples=5, max_new_tokens=31, filters="correct", confidence=True))
  assert [r["answer"] for r in records] == ["734\nconfidence: 0.40", "0734\nconfidence: 0.40"]
  three = [("<think>a</think>734", True), ("<think>b</think>734", True), ("<think>c</think>1", True)]
  records, _ = chunk(three, teach_config(samples=3, filters="correct", confidence=True))
  assert [r["answer"] for r in records] == ["734\nconfidence: 0.67"] * 2


def test_a_confidence_the_teacher_wrote_is_replaced_and_a_hinted_record_states_its_unhinted_share():
  own = [("<think>a</think>734\nconfidence: 0.9", True), ("<think>b</think>735\nconfidence: 1.0", True)]
  records, _ = chunk(own, teach_config(samples=2, filters="correct", confidence=True))
  assert [r["answer"] for r in records] == ["734\nconfidence: 0.50"]  # one line, not two (two would state none)

  def script(prompt, j):  # wrong unless told the answer
    return ("<think>hinted</think>734", True) if "(answer: 734)" in prompt else ("<think>guess</think>1", True)

  teacher = ScriptedTeacher(script)
  config = teach_config(samples=2, filters="correct", rationalise=True, confidence=True)
  records, _ = sample_chunk(teacher, None, TOK, [(0, SUM)], jax.random.key(0), config, "/teacher")
  # The hinted pass agrees 2 of 2, but the question alone was answered 734 by 0 of 2 first-pass samples
  assert [(r["answer"], r["provenance"]["rationalised"]) for r in records] == [("734\nconfidence: 0.00", True)] * 2


def test_the_confidence_line_survives_records_to_sft_completions_to_stated_confidence(tmp_path):
  config = base_config()
  config.data.train_size, config.data.test_size, config.eval.num_examples = 8, 4, 4
  question = load_inputs(config).train[2]
  answer = question.answer
  completions = [(f"<think>{question.rationale}</think>{answer}", True), (f"<think>r</think>0{answer}", True),
                 (f"<think>r</think>{int(answer) + 1}", True), ("<think>r</think>", True)]
  records, _ = chunk(completions, teach_config(samples=4, filters="correct", confidence=True), [(2, question)])
  assert len(records) == 2
  path = tmp_path / "data.jsonl"
  path.write_text("".join(json.dumps(r) + "\n" for r in records))
  config.data.rationales_path = str(path)
  examples = load_inputs(config).train  # data.rationales_path: the records become the train split
  assert [e.answer for e in examples] == [f"{answer}\nconfidence: 0.50", f"0{answer}\nconfidence: 0.50"]
  batch = SFTBatches(examples, TOK, batch_size=2, max_len=128, seed=0).batch(0)
  for tokens, loss_mask in zip(batch["tokens"], batch["loss_mask"]):
    targets = tokens[1:][loss_mask[:-1] > 0]  # the completion the student learns to write, eos last
    assert targets[-1] == TOK.eos_id
    text = TOK.decode(targets[:-1].tolist())
    assert text.endswith("\nconfidence: 0.50") and text.startswith("<think>")
    assert rewards.stated_confidence(text) == 0.5
    scored = score(question, text, len(targets))
    assert scored.correct and scored.confidence == 0.5
    # RLCR's reward on it: y - (c - y)^2 = 1 - 0.25
    np.testing.assert_allclose(rewards.build_reward("calibration", None, None)([""], [text], [question]), [0.75])


def test_confidence_from_a_teacher_shown_the_gold_answer_is_refused_before_any_work():
  config = teach_config(confidence=True)
  config.data.prompt_context = "answer"
  with pytest.raises(ConfigError, match=r"teach.confidence=True with config.data.prompt_context='answer'.*agrees "
                                        r"with itself"):
    train.run(config, "/nonexistent/never_written")
