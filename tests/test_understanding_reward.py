"""The "understanding" reward (RLT, 2506.08388): a frozen student's log-likelihood of the gold answer after the
teacher's explanation, minus the KL term, against a direct forward of the student written here."""

import functools
import os

import numpy as np
import pytest

from rr import models, sharding, train
from rr.config import ConfigError, base_config, load_config
from rr.data import CharTokenizer, format_prompt
from rr.rewards import RolloutView
from rr.rewards.understanding import (UNUSABLE_MARGIN, Understanding, check_config, find_explanation,
                                      uniform_floor)
from rr.tasks import Example
from rr.train.collector import RolloutCollector
from rr.train.frozen import load_frozen
from rr.train.groups import make_keep
from rr.train.metrics import read_metrics
from rr.train.privileged import policy_question
from rr.train.rl_config import build_combination, build_rewards
from scripted_rollouts import BothQuestions, ScriptedSampler

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOK = CharTokenizer()
C = 40  # completion width of the hand-made rollouts
EXAMPLES = [Example("123+456", "3+6=9\n2+5=7\n1+4=5", "579", 3, "addition"),
            Example("27+58", "7+8=15\n2+5+1=8", "85", 2, "addition")]


def ids(text):
  return TOK.encode(text)


def view(rows, logprobs=None):
  """A RolloutView of hand-made completions: rows are (example index, completion ids); the teacher read the gold
  answer first. Teacher log-probs are given per row or drawn (negative), 0 past each row's length."""
  n = len(rows)
  tokens = np.full((n, C), TOK.pad_id, np.int32)
  mask = np.zeros((n, C), bool)
  logp = np.zeros((n, C), np.float32)
  rng = np.random.default_rng(0)
  for i, (_, completion) in enumerate(rows):
    tokens[i, :len(completion)] = completion
    mask[i, :len(completion)] = True
    logp[i, :len(completion)] = (-rng.uniform(0.05, 3.0, len(completion)) if logprobs is None
                                 else logprobs[i][:len(completion)])
  examples = [EXAMPLES[e] for e, _ in rows]
  return RolloutView([e.question + "\n" for e in examples], [TOK.decode(c) for _, c in rows], examples,
                     [ids(e.answer + "\n" + e.question + "\n") for e in examples], tokens, mask, logp)


def loader(mesh):
  """The trainer's frozen-model loader, as GRPOStep lends it to the reward's bind."""
  return functools.partial(load_frozen, mesh=mesh, vocab_size=TOK.vocab_size)


@pytest.fixture(scope="module")
def student(sft_workdir):
  """The SFT checkpoint as the frozen student, bound once; tests make rewards of other settings around it."""
  reward = Understanding(sft_workdir, TOK)
  mesh = sharding.make_mesh()
  reward.bind(mesh, TOK.vocab_size, loader(mesh))
  return reward


def reward_like(student, alpha, kl_weight, temperature=1.0):
  reward = Understanding(student.student_path, TOK, alpha, kl_weight, temperature)
  reward.bind(student.mesh, TOK.vocab_size, loader(student.mesh))
  return reward


def log_softmax(x):
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def hand_parts(student, example, explanation, teacher_logp, temperature):
  """(r_SS, r_KL) written out: the student's row built from text, one plain forward, numpy log-softmax."""
  prompt = ids(example.question + "\n")
  opened = ids("<think>" + explanation)
  row = prompt + opened + ids("</think>" + example.answer) + [TOK.eos_id]
  logits = np.asarray(models.forward(student.student.model_cfg, student.student.params, np.asarray([row])),
                      np.float64)[0]
  targets = np.asarray(row[1:])
  plain = log_softmax(logits[:-1])[np.arange(len(row) - 1), targets]  # plain[p - 1]: log pi_s(row[p] | row[:p])
  tempered = log_softmax(logits[:-1] / temperature)[np.arange(len(row) - 1), targets]
  answer_len = len(example.answer) + 1  # the answer's ids and eos
  solution = plain[-answer_len:]
  first = len(prompt) + 1  # after the prompt and the "<think>" id
  kl = np.asarray(teacher_logp[1:1 + len(explanation)], np.float64) - tempered[first - 1:first - 1 + len(explanation)]
  return solution, kl


ROWS = [  # (example, explanation, what the teacher writes after "</think>", eos or not)
    (0, EXAMPLES[0].rationale, "579", True),  # the program's explanation
    (0, "the answer is 579", "579", True),  # copies the answer: allowed, the KL term prices it
    (1, "maybe 84 or 85 or 86", "86", True),  # several candidates and a wrong answer of its own (not read)
    (1, "7+8=15" + " " * 12, "85", True),  # blank filler dilutes the mean KL
    (0, "3+6=9", "57", False),  # the think block closed, then cut off while answering: usable
]


@pytest.mark.parametrize("alpha,kl_weight,temperature", [(0.01, 3.0, 1.0), (0.5, 0.7, 0.6)])
def test_the_reward_is_the_students_answer_likelihood_minus_the_kl_term_by_hand(student, alpha, kl_weight,
                                                                                temperature):
  reward = reward_like(student, alpha, kl_weight, temperature)
  completions = [(e, ids("<think>" + x + "</think>" + a) + ([TOK.eos_id] if eos else [])) for e, x, a, eos in ROWS]
  v = view(completions)
  got = reward(v)
  want_ss, want_kl = [], []
  for i, (e, explanation, _, _) in enumerate(ROWS):
    solution, kl = hand_parts(reward, EXAMPLES[e], explanation, v.logprobs_NxC[i], temperature)
    want_ss.append(solution.mean() + alpha * solution.min())
    want_kl.append(kl.mean() + alpha * kl.max())
    assert len(solution) == len(EXAMPLES[e].answer) + 1 and len(kl) == len(explanation)
  want = np.asarray(want_ss) - kl_weight * np.asarray(want_kl)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  assert np.ptp(want) > 0.1  # the rows differ, so a wrong row or position would show
  metrics = reward.metrics()
  np.testing.assert_allclose([metrics["r_ss"], metrics["r_kl"]], [np.mean(want_ss), np.mean(want_kl)], rtol=1e-5)
  assert metrics["explanation_tokens"] == np.mean([len(x) for _, x, _, _ in ROWS])
  assert metrics["unusable_frac"] == 0.0 and reward.metrics() == {}  # one step's rounds, then reset


def test_copying_the_answer_is_priced_by_the_kl_term(student):
  """A teacher certain of the copied answer (log pi_teacher = 0) pays KL_j = -log pi_s(t_j) > 0 on every token."""
  completion = ids("<think>579</think>579") + [TOK.eos_id]
  certain = [np.zeros(C, np.float32)]
  free, priced = reward_like(student, 0.01, 0.0), reward_like(student, 0.01, 3.0)
  v = view([(0, completion)], certain)
  r_free, r_priced = free(v)[0], priced(v)[0]
  solution, kl = hand_parts(free, EXAMPLES[0], "579", certain[0], 1.0)
  assert np.all(kl > 0)
  np.testing.assert_allclose(r_free, solution.mean() + 0.01 * solution.min(), rtol=1e-5)
  np.testing.assert_allclose(r_free - r_priced, 3.0 * (kl.mean() + 0.01 * kl.max()), rtol=1e-4)


UNUSABLE = [  # (completion ids, reason)
    (ids("579") + [TOK.eos_id], "no_think"),
    (ids("so <think>3+6=9</think>579") + [TOK.eos_id], "no_think"),  # the tag not at the start
    ([TOK.eos_id], "no_think"),  # ended at once
    (ids("<think>3+6=9\n2+5=7\n1+4=5\n3+6=9\n2+5=7\n1+4=5\n3+6=9\n")[:C], "unclosed"),  # cut off while thinking
    (ids("<think>") + [TOK.eos_id], "unclosed"),
    (ids("<think></think>579") + [TOK.eos_id], "empty"),
    (ids("<think>  \n </think>579") + [TOK.eos_id], "empty"),
    (ids("<think>") + [TOK.pad_id] * 6 + ids("</think>579") + [TOK.eos_id], "empty"),  # padding inside
]


def test_rows_without_a_usable_explanation_never_beat_a_real_one(student):
  for completion, reason in UNUSABLE:
    assert find_explanation(completion[:-1] if completion[-1] == TOK.eos_id else completion, TOK).unusable == reason
  reward = reward_like(student, 0.01, 3.0)
  real = [ids("<think>" + EXAMPLES[0].rationale + "</think>579") + [TOK.eos_id],
          ids("<think>x</think>1") + [TOK.eos_id]]
  # the real rows' teacher is absurdly sure of its tokens (log-prob +20), so their KL makes them score very low
  logprobs = [np.full(C, 20.0, np.float32)] * len(real) + [None] * len(UNUSABLE)
  logprobs = [lp if lp is not None else -np.ones(C, np.float32) for lp in logprobs]
  got = reward(view([(0, c) for c in real] + [(0, c) for c, _ in UNUSABLE], logprobs))
  usable, unusable = got[:len(real)], got[len(real):]
  assert usable.min() < -60  # the KL of 20 per token, times 3
  np.testing.assert_allclose(unusable, usable.min() - UNUSABLE_MARGIN, rtol=1e-6)
  metrics = reward.metrics()
  assert metrics["unusable_frac"] == pytest.approx(len(UNUSABLE) / (len(UNUSABLE) + len(real)))
  assert metrics["unusable_empty_frac"] == pytest.approx(3 / (len(UNUSABLE) + len(real)))
  assert metrics["explanation_tokens"] == np.mean([len(EXAMPLES[0].rationale), 1])
  # a good real row: the unusable ones sit at the uniform student's floor, below it
  sure = [np.full(C, -10.0, np.float32)] + [-np.ones(C, np.float32)] * len(UNUSABLE)  # KL < 0: a high reward
  got = reward(view([(0, real[0])] + [(0, c) for c, _ in UNUSABLE], sure))
  floor = -(1 + 0.01) * np.log(TOK.vocab_size)
  assert got[0] > floor and np.all(got[1:] == np.float32(floor))
  # only unusable rows: all at the floor, no student forward needed
  got = reward(view([(0, c) for c, _ in UNUSABLE]))
  np.testing.assert_allclose(got, uniform_floor(0.01, TOK.vocab_size))
  assert uniform_floor(0.01, TOK.vocab_size) == pytest.approx(floor)


def test_tags_spelled_in_other_ids_are_found_in_the_text_and_the_teachers_ids_are_kept(student):
  spelled = [TOK.encode(ch)[0] for ch in "<think>"]  # "<think>" written character by character
  explanation = ids("9+9=18")
  completion = spelled + explanation + [TOK.encode(ch)[0] for ch in "</think>"] + ids("18")
  found = find_explanation(completion, TOK)
  assert (found.start, found.end, found.unusable) == (len(spelled), len(spelled) + len(explanation), "")
  row = student.student_row("9+9\n", completion + [TOK.eos_id], np.arange(len(completion) + 1) * -0.1, "18")
  prompt = ids("9+9\n")
  assert row.tokens == prompt + spelled + explanation + ids("</think>18") + [TOK.eos_id]
  np.testing.assert_array_equal(row.explanation, np.arange(len(prompt) + 7, len(prompt) + 7 + len(explanation)))
  np.testing.assert_array_equal(row.solution, np.arange(len(row.tokens) - 3, len(row.tokens)))
  np.testing.assert_allclose(row.teacher_logp, np.arange(7, 7 + len(explanation)) * -0.1)
  # several closing tags: the explanation ends at the first
  assert find_explanation(ids("<think>a</think>b</think>c"), TOK).end == 2


def test_one_compile_for_rounds_of_other_question_lengths(student):
  reward = reward_like(student, 0.01, 3.0)
  short = ids("<think>7+8=15</think>85") + [TOK.eos_id]
  reward(view([(1, short), (1, short)]))
  width = reward.width
  reward(view([(0, ids("<think>" + EXAMPLES[0].rationale + "</think>579") + [TOK.eos_id]), (1, short)]))
  assert reward.width == width and reward._logprobs._cache_size() == 1


def test_a_teacher_that_read_only_the_question_is_refused(student):
  v = view([(0, ids("<think>3+6=9</think>579") + [TOK.eos_id])])
  plain = RolloutView(v.prompts, v.completions, v.examples, [ids(p) for p in v.prompts], v.tokens_NxC, v.mask_NxC,
                      v.logprobs_NxC)
  with pytest.raises(ValueError, match=r"config.data.prompt_context='answer'"):
    student(plain)


def test_settings_it_cannot_score_are_one_config_error(tmp_path):
  config = base_config()
  rl = config.rl
  rl.rewards, rl.reward_weights = "understanding", "1"
  with pytest.raises(ConfigError, match=r"config.rl.*config.rl.understanding_student"):
    build_rewards(rl, TOK)
  rl.understanding_student = str(tmp_path / "missing")
  with pytest.raises(ConfigError, match=r"missing.*is not a directory"):
    build_rewards(rl, TOK)
  rl.understanding_student = str(tmp_path)
  rl.top_k = 5
  with pytest.raises(ConfigError, match=r"config.rl.top_k=0"):
    build_rewards(rl, TOK)
  rl.top_k, rl.understanding_kl_weight = 0, -1.0
  with pytest.raises(ConfigError, match=r"config.rl.understanding_kl_weight"):
    build_rewards(rl, TOK)
  rl.understanding_kl_weight = 3.0
  assert isinstance(build_rewards(rl, TOK)[0][0], Understanding)
  with pytest.raises(ConfigError, match=r"config.data.prompt_context='answer'"):
    check_config(config)
  config.data.prompt_context = "answer"
  check_config(config)


def test_the_collector_hands_the_reward_the_teachers_rollouts(student):
  """Through the RL collector: the policy read the gold answer first, the reward scores each group's rows against
  the plain question, and the unusable rows sit below the usable ones of the round."""
  config = base_config()
  rl = config.rl
  rl.rewards, rl.reward_weights, rl.understanding_student = "understanding", "1", student.student_path
  rl.prompts_per_step, rl.group_size, rl.max_new_tokens = 2, 2, C
  fns, weights = build_rewards(rl, TOK)
  fns[0].bind(student.mesh, TOK.vocab_size, loader(student.mesh))
  script = [("<think>3+6=9</think>579", -0.5), ("579", -0.5), ("<think>7+8=15</think>85", -0.7), ("<think>7+8", -0.7)]
  prompts = [ids(format_prompt(policy_question(e, "answer"))) for e in EXAMPLES]
  collector = RolloutCollector(rl, ScriptedSampler(TOK, script), TOK, prompts, EXAMPLES, BothQuestions(), fns,
                               build_combination(rl, fns, weights), make_keep(rl), width=64, seed=0, max_rounds=1)
  rollouts = collector.collect(None, 0)
  got = rollouts.chosen.rewards_NxK[:, 0]
  assert rollouts.failures == [] and rollouts.chosen.valid_N.all()
  want = []
  for e, explanation, logp in ((0, "3+6=9", -0.5), (1, "7+8=15", -0.7)):
    solution, kl = hand_parts(student, EXAMPLES[e], explanation, np.full(C, logp), 1.0)
    want.append(solution.mean() + 0.01 * solution.min() - 3.0 * (kl.mean() + 0.01 * kl.max()))
  np.testing.assert_allclose(got[[0, 2]], want, rtol=1e-5)
  np.testing.assert_allclose(got[[1, 3]], min(uniform_floor(0.01, TOK.vocab_size), min(want) - UNUSABLE_MARGIN),
                             rtol=1e-6)


def test_a_grpo_teacher_trains_on_the_reward_and_logs_its_parts(sft_workdir, tmp_path):
  config = load_config(os.path.join(ROOT, "configs", "grpo.py") + ":runlocal",
                       [("init_checkpoint", sft_workdir), ("train.steps", "2"), ("eval.num_examples", "0"),
                        ("rl.rewards", "understanding"), ("rl.reward_weights", "1"),
                        ("data.prompt_context", "answer"), ("rl.understanding_student", sft_workdir)])
  summary = train.run(config, str(tmp_path / "teacher"))
  rows = [r for r in read_metrics(str(tmp_path / "teacher" / "metrics.jsonl")) if "train/loss" in r]
  assert summary["finished"] and [r["step"] for r in rows] == [1, 2]
  for r in rows:  # a 12-step SFT policy writes near-random text, so most rows (or all) have no usable explanation
    assert np.isfinite(r["train/loss"]) and r["train/rewards/invalid_frac"] == 0.0
    assert np.isfinite(r["train/rewards/understanding/mean"])
    assert 0.0 <= r["train/rewards/understanding/unusable_frac"] <= 1.0
    assert "train/rewards/understanding/r_kl" in r and "train/rewards/understanding/explanation_tokens" in r
