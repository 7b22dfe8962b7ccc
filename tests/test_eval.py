"""Eval scoring: answers by the task's verifier, steps by its checker, user data by exact match."""

import numpy as np

from rr.data import CharTokenizer, format_completion
from rr.eval import evaluate_accuracy, score
from rr.tasks import Example, get_task
from rr.sampler import SampleOutput


def score_completion(example, completion):
  """(answer right, every step right) as rr.eval.score reads them."""
  scored = score(example, completion, length=0)
  return scored.correct, scored.steps_ok


def addition_example():
  return get_task("addition").generate(np.random.default_rng(0), 3)


def test_teacher_completion_scores_right_on_both_counts():
  example = addition_example()
  assert score_completion(example, format_completion(example)) == (True, True)


def test_planted_wrong_step_with_right_answer_fails_only_the_step_check():
  example = addition_example()
  lines = example.rationale.split("\n")
  a, rest = lines[0].split("+", 1)
  lines[0] = f"{(int(a) + 1) % 10}+{rest}"  # first column now reads a wrong digit of the first operand
  completion = "<think>" + "\n".join(lines) + "</think>" + example.answer
  assert score_completion(example, completion) == (True, False)


def test_an_incomplete_chain_is_no_right_chain():
  example = addition_example()  # 865+673=1538: three columns
  assert score_completion(example, "<think>5+3+0=08</think>1538") == (True, False)
  assert score_completion(example, "<think>5+3+0=08\n6+7+0=13</think>1538") == (True, False)
  assert score_completion(example, "<think>" + example.rationale + "\n0+0+0=00</think>1538") == (True, False)


def test_unclosed_think_is_unparsed_for_benchmark_data_too():
  example = Example(question="q", rationale="", answer="72", task="gsm8k")
  scored = score(example, "<think>so #### 72", length=0)
  assert (scored.answer, scored.correct) == (None, False)


def test_wrong_answer_fails_both_and_unparseable_text_never_raises():
  example = addition_example()
  wrong = str(int(example.answer) + 1)
  assert score_completion(example, "<think>" + example.rationale + "</think>" + wrong) == (False, False)
  assert score_completion(example, "\x00 garbage </think></think>") == (False, False)


def test_user_data_uses_whitespace_normalised_exact_match_and_no_step_check():
  example = Example(question="capital of France?", rationale="", answer="Paris  City")
  assert score_completion(example, "<think>hm</think> Paris City ") == (True, None)
  assert score_completion(example, "<think>hm</think>paris city") == (False, None)


class ScriptedSampler:
  """Returns fixed completions, so evaluate_accuracy's bookkeeping is checked without a model."""

  def __init__(self, tokenizer, completions):
    self.tokenizer, self.completions = tokenizer, completions

  def __call__(self, params, prompts, *, max_new_tokens, strategy, rng):
    rows = [self.tokenizer.encode(c) + [self.tokenizer.eos_id] for c in self.completions[:len(prompts)]]
    self.completions = self.completions[len(prompts):]
    tokens = np.full((len(rows), max_new_tokens), self.tokenizer.pad_id, np.int32)
    for i, r in enumerate(rows):
      tokens[i, :len(r)] = r
    zeros = np.zeros(tokens.shape, np.float32)
    return SampleOutput(tokens=tokens, lengths=np.array([len(r) for r in rows], np.int32), logprobs=zeros,
                        model_logprobs=zeros, prompt_index=np.arange(len(rows), dtype=np.int32))


def test_evaluate_accuracy_counts_over_batches():
  tok = CharTokenizer()
  examples = [get_task("addition").generate(np.random.default_rng(s), 3) for s in range(6)]
  completions = [format_completion(e) for e in examples]
  completions[1] = "<think></think>" + examples[1].answer  # right answer, no steps
  completions[3] = "<think>" + examples[3].rationale + "</think>0"  # wrong answer
  completions[5] = "<think>" + examples[5].rationale  # ran out of tokens while thinking: unparsed
  metrics = evaluate_accuracy(ScriptedSampler(tok, completions), None, tok, examples, max_new_tokens=64,
                              batch_size=2)
  assert metrics["eval/accuracy"] == 4 / 6
  assert metrics["eval/step_accuracy"] == 3 / 6
  assert metrics["eval/num_examples"] == 6 and metrics["eval/unparsed"] == 1
  want_length = np.mean([len(tok.encode(c)) + 1 for c in completions])
  assert abs(metrics["eval/completion_length"] - want_length) < 1e-9


def test_evaluate_accuracy_reports_each_difficulty_of_a_mixed_split():
  tok = CharTokenizer()
  addition = get_task("addition")
  examples = [addition.generate(np.random.default_rng(s), d) for s, d in enumerate((3, 1, 2, 3, 2, 3))]
  completions = [format_completion(e) for e in examples]
  completions[2] = "<think>" + examples[2].rationale + "</think>0"  # level 2: wrong
  completions[3] = "<think>" + examples[3].rationale  # level 3: unparsed
  metrics = evaluate_accuracy(ScriptedSampler(tok, completions), None, tok, examples, max_new_tokens=64,
                              batch_size=4)
  # Right: level 1 one of one, level 2 one of two, level 3 two of three.
  assert metrics["eval/accuracy/difficulty_1"] == 1.0 and metrics["eval/num_examples/difficulty_1"] == 1
  assert metrics["eval/accuracy/difficulty_2"] == 0.5 and metrics["eval/num_examples/difficulty_2"] == 2
  assert metrics["eval/accuracy/difficulty_3"] == 2 / 3 and metrics["eval/num_examples/difficulty_3"] == 3
  assert metrics["eval/accuracy"] == 4 / 6

  one_level = [addition.generate(np.random.default_rng(s), 3) for s in range(2)]
  metrics = evaluate_accuracy(ScriptedSampler(tok, [format_completion(e) for e in one_level]), None, tok, one_level,
                              max_new_tokens=64, batch_size=4)
  assert not [key for key in metrics if "difficulty" in key]
