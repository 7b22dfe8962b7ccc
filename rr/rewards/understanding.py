"""RLT's teacher reward: a frozen student's understanding of the solution after the teacher's explanation.

RLT (2506.08388; the idea of 2306.09299): the RL policy is a teacher that reads the gold answer before the question
(config.data.prompt_context) and writes "<think>" explanation "</think>" answer, as every rr completion. A frozen
student (rl.understanding_student) then reads the plain question, the teacher's explanation and the gold answer,
laid out as an rr completion, so it is scored on what it would have to write itself:

  student row  format_prompt(question) | the teacher's "<think>" and explanation ids | "</think>" answer eos

One jitted forward of the student over the round's N rows gives
  r_SS = mean_k log pi_s(s_k | q, t, s_<k) + alpha * min_k log pi_s(s_k | ...)   s = the answer's ids and eos, T = 1
  r_KL = mean_j KL_j + alpha * max_j KL_j,   KL_j = log pi_teacher(t_j | ...) - log pi_s(t_j | q, t_<j)
  R    = r_SS - kl_weight * r_KL             (alpha = rl.understanding_alpha, kl_weight = rl.understanding_kl_weight)
over the explanation ids t_j (between the tags). log pi_teacher is the sampler's log-prob of t_j (RolloutView), at
rl.temperature; the student's KL_j log-probs are taken at the same temperature, so KL_j compares the distributions
that sampled (RLT's formula exactly at T = 1). The explanation keeps the teacher's own ids, so KL_j is aligned
token by token; the closing tag and the answer are encoded as SFT encodes a completion.

A row with no usable explanation (no "<think>" at the start, the think block never closed, nothing but blanks
inside it) scores below every usable row of its round: the lowest usable reward minus UNUSABLE_MARGIN, and never
more than a student that learned nothing (uniform: -(1 + alpha) log V, no KL).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rr import sharding
from rr.config import ConfigError
from rr.data.tokenizers import THINK_CLOSE, THINK_OPEN
from rr.rewards.base import RolloutReward, RolloutView
from rr.rewards.registry import register

WIDTH_STEP = 32  # the student rows' width is rounded up to this, so rounds with other question lengths reuse it
UNUSABLE_MARGIN = 1.0  # how far below the round's worst usable explanation an unusable one scores
UNUSABLE_REASONS = ("no_think", "unclosed", "empty")


@dataclasses.dataclass(frozen=True)
class Explanation:
  """Where a completion's explanation lies: completion ids [0, start) are the "<think>" tag, [start, end) the
  explanation; or `unusable` says why there is none (one of UNUSABLE_REASONS)."""
  start: int = 0
  end: int = 0
  unusable: str = ""


def _find(ids: list[int], part: list[int], start: int) -> int | None:
  for k in range(start, len(ids) - len(part) + 1):
    if ids[k:k + len(part)] == part:
      return k
  return None


def find_explanation(ids: Sequence[int], tokenizer) -> Explanation:
  """The explanation in a completion's ids (eos excluded). The tags are first looked for as the tokenizer's own
  ids; a tag the teacher spelled with other ids (a BPE tokenizer without think tokens, or "<think>" written
  character by character) is found in the decoded text instead, and the explanation is then the tokens that lie
  wholly between the two tags."""
  ids = [int(i) for i in ids]
  open_ids, close_ids = tokenizer.encode(THINK_OPEN), tokenizer.encode(THINK_CLOSE)
  if ids[:len(open_ids)] == open_ids:
    end = _find(ids, close_ids, len(open_ids))
    if end is not None:
      return _checked(ids, len(open_ids), end, tokenizer)
  text = tokenizer.decode(ids)
  if not text.startswith(THINK_OPEN):
    return Explanation(unusable="no_think")
  close_at = text.find(THINK_CLOSE, len(THINK_OPEN))
  if close_at < 0:
    return Explanation(unusable="unclosed")
  lengths = [len(tokenizer.decode(ids[:k])) for k in range(len(ids) + 1)]  # only on this rare path
  start = next(k for k, n in enumerate(lengths) if n >= len(THINK_OPEN))
  end = start
  while end < len(ids) and lengths[end + 1] <= close_at:
    end += 1
  return _checked(ids, start, end, tokenizer)


def _checked(ids: list[int], start: int, end: int, tokenizer) -> Explanation:
  if not tokenizer.decode(ids[start:end]).strip():
    return Explanation(unusable="empty")
  return Explanation(start, end)


@dataclasses.dataclass(frozen=True)
class StudentRow:
  """One row the student reads, and which of its positions each part of the reward scores."""
  tokens: list[int]
  explanation: np.ndarray  # positions of the explanation's ids in `tokens`
  solution: np.ndarray  # positions of the answer's ids and eos
  teacher_logp: np.ndarray  # the sampler's log-probs of the explanation's ids


def uniform_floor(alpha: float, vocab_size: int) -> float:
  """r_SS of a student that learned nothing (uniform over the vocabulary), with no KL: the most an unusable row
  can score."""
  return -(1.0 + alpha) * float(np.log(vocab_size))


class Understanding(RolloutReward):
  """R = r_SS - kl_weight * r_KL per rollout (module docstring); `bind` loads the frozen student."""
  name = "understanding"

  def __init__(self, student_path: str, tokenizer, alpha: float = 0.01, kl_weight: float = 3.0,
               temperature: float = 1.0):
    self.student_path, self.tokenizer = student_path, tokenizer
    self.alpha, self.kl_weight, self.temperature = float(alpha), float(kl_weight), float(temperature)
    self.student = self.mesh = self._logprobs = None
    self.vocab_size = tokenizer.vocab_size  # the run's tokenizer's; bind sets it again
    self.width = 0  # the student rows' width, fixed on the first round (it grows only if a later row is longer)
    self._prompts: dict[str, list[int]] = {}
    self._tails: dict[str, tuple[list[int], int]] = {}
    self._sums: dict[str, float] = {}

  def bind(self, mesh, vocab_size: int, load_frozen=None) -> None:
    if load_frozen is None:
      raise ValueError("the understanding reward loads its frozen student with the trainer's loader: call "
                       "bind(mesh, vocab_size, load_frozen) (rr.train.grpo.GRPOStep does)")
    self.mesh, self.vocab_size = mesh, vocab_size
    self.student = load_frozen(self.student_path, what="config.rl.understanding_student")
    model, temperature = self.student.model, self.temperature

    def logprobs(params, tokens_NxW):
      """(log pi_s at T = 1, at rl.temperature) of each token given those before it; column 0 is 0."""
      positions_NxW = jnp.broadcast_to(jnp.arange(tokens_NxW.shape[1], dtype=jnp.int32), tokens_NxW.shape)
      logits, _ = model.apply({"params": params}, tokens_NxW, positions_NxW)
      logits = logits[:, :-1, :vocab_size].astype(jnp.float32)  # padded table rows are ids no text has
      targets = tokens_NxW[:, 1:, None]

      def pick(scaled):  # log_softmax at the targets only: no second [N, W, V] array
        logp = jnp.take_along_axis(scaled, targets, -1)[..., 0] - jax.nn.logsumexp(scaled, -1)
        return jnp.pad(logp, ((0, 0), (1, 0)))

      plain = pick(logits)
      return plain, plain if temperature == 1.0 else pick(logits / temperature)

    self._logprobs = jax.jit(logprobs, out_shardings=sharding.replicated(mesh))

  # ------------------------------------------------------------------ the student's rows

  def _prompt(self, text: str) -> list[int]:
    if text not in self._prompts:
      self._prompts[text] = self.tokenizer.encode(text)
    return self._prompts[text]

  def _tail(self, answer: str) -> tuple[list[int], int]:
    """("</think>" answer eos as ids, where the answer starts): encoded in one piece, as SFT encodes a completion,
    unless that merges the tag into the answer's first token."""
    if answer not in self._tails:
      close_ids, eos = self.tokenizer.encode(THINK_CLOSE), [self.tokenizer.eos_id]
      tail = self.tokenizer.encode(THINK_CLOSE + answer)
      if tail[:len(close_ids)] != close_ids:
        tail = close_ids + self.tokenizer.encode(answer)
      self._tails[answer] = (tail + eos, len(close_ids))
    return self._tails[answer]

  def student_row(self, prompt_text: str, completion_ids: Sequence[int], logprobs: Sequence[float],
                  answer: str) -> StudentRow | str:
    """The student's row for one rollout, or why it has no usable explanation. `completion_ids` are the
    generated ids (eos included if sampled), `logprobs` the sampler's log-probs of them."""
    ids = [int(i) for i in completion_ids]
    if ids and ids[-1] == self.tokenizer.eos_id:
      ids = ids[:-1]
    found = find_explanation(ids, self.tokenizer)
    if found.unusable:
      return found.unusable
    prompt = self._prompt(prompt_text)
    tail, answer_start = self._tail(answer)
    tokens = prompt + ids[:found.end] + tail
    first = len(prompt)
    solution_start = first + found.end + answer_start
    return StudentRow(tokens, np.arange(first + found.start, first + found.end),
                      np.arange(solution_start, len(tokens)),
                      np.asarray(logprobs[found.start:found.end], np.float64))

  # ------------------------------------------------------------------ scoring

  def _check_teacher_read_more(self, view: RolloutView) -> None:
    """A teacher that read only the plain question was not shown the solution (config.data.prompt_context='')."""
    for prompt_text, read in zip(view.prompts, view.prompt_ids):
      if [int(i) for i in read] == self._prompt(prompt_text):
        raise ValueError("the 'understanding' reward needs a teacher that reads the gold solution, but the policy "
                         "read the plain question; set config.data.prompt_context='answer' (or 'solution')")

  def student_logprobs(self, rows: Sequence[StudentRow]) -> tuple[np.ndarray, np.ndarray]:
    """The student's (T = 1, rl.temperature) log-probs [n, width] of the rows' tokens, one forward."""
    if self._logprobs is None:
      raise ValueError("the 'understanding' reward was never bound to a mesh (RolloutReward.bind), so it has no "
                       "student; the grpo trainer binds it before the first step")
    longest = max(len(r.tokens) for r in rows)
    if longest > self.width:  # the first round, or a longer row than any before: a new compile
      self.width = -(-longest // WIDTH_STEP) * WIDTH_STEP
    tokens = np.full((len(rows), self.width), self.tokenizer.pad_id, np.int32)
    for i, row in enumerate(rows):
      tokens[i, :len(row.tokens)] = row.tokens
    split = len(rows) % sharding.batch_shards(self.mesh) == 0
    where = sharding.batch_sharding(self.mesh) if split else sharding.replicated(self.mesh)
    placed = jax.make_array_from_callback(tokens.shape, where, lambda index: tokens[index])  # every process has all
    plain, tempered = self._logprobs(self.student.params, placed)
    return np.asarray(plain, np.float64), np.asarray(tempered, np.float64)

  def parts(self, row: StudentRow, plain: np.ndarray, tempered: np.ndarray) -> tuple[float, float]:
    """(r_SS, r_KL) of one row from the student's log-probs of its tokens."""
    solution = plain[row.solution]
    kl = row.teacher_logp - tempered[row.explanation]
    return (float(solution.mean() + self.alpha * solution.min()),
            float(kl.mean() + self.alpha * kl.max()))

  def score(self, view: RolloutView) -> np.ndarray:
    self._check_teacher_read_more(view)
    n = len(view.completions)
    lengths = np.asarray(view.mask_NxC, bool).sum(axis=1)
    built = [self.student_row(view.prompts[i], view.tokens_NxC[i, :lengths[i]], view.logprobs_NxC[i, :lengths[i]],
                              view.examples[i].answer) for i in range(n)]
    usable = [i for i, row in enumerate(built) if isinstance(row, StudentRow)]
    rewards = np.zeros(n, np.float64)
    r_ss, r_kl = [], []
    if usable:
      plain, tempered = self.student_logprobs([built[i] for i in usable])
      for k, i in enumerate(usable):
        ss, kl = self.parts(built[i], plain[k], tempered[k])
        r_ss.append(ss)
        r_kl.append(kl)
        rewards[i] = ss - self.kl_weight * kl
    floor = uniform_floor(self.alpha, self.vocab_size)
    if usable:
      floor = min(floor, float(rewards[usable].min()) - UNUSABLE_MARGIN)
    unusable = np.array([not isinstance(row, StudentRow) for row in built])
    rewards[unusable] = floor
    self._add(rows=n, usable=len(usable), r_ss=sum(r_ss), r_kl=sum(r_kl),
              explanation_tokens=sum(len(built[i].explanation) for i in usable),
              **{reason: sum(row == reason for row in built) for reason in UNUSABLE_REASONS})
    return rewards.astype(np.float32)

  # ------------------------------------------------------------------ metrics

  def _add(self, **amounts: float) -> None:
    for key, amount in amounts.items():
      self._sums[key] = self._sums.get(key, 0.0) + float(amount)

  def metrics(self) -> dict[str, float]:
    """Since the last call (one step's rounds): the usable rows' mean r_SS, r_KL and explanation length, and
    the share of rows with no usable explanation, by reason. Logged as train/rewards/understanding/<key>."""
    sums, self._sums = self._sums, {}
    if not sums.get("rows"):
      return {}
    usable = sums["usable"]
    mean = lambda key: sums[key] / usable if usable else float("nan")
    return {"r_ss": mean("r_ss"), "r_kl": mean("r_kl"), "explanation_tokens": mean("explanation_tokens"),
            "unusable_frac": 1.0 - usable / sums["rows"],
            **{f"unusable_{reason}_frac": sums[reason] / sums["rows"] for reason in UNUSABLE_REASONS}}


def check_config(config) -> None:
  """What the factory cannot check, since it reads config.rl only: the teacher must read the gold solution
  (config.data.prompt_context), or the student's likelihood of it measures nothing the teacher was shown."""
  names = [n.strip() for n in config.rl.rewards.split(",")]
  if Understanding.name in names and not config.data.prompt_context:
    raise ConfigError("config.rl.rewards has 'understanding' (RLT), which rewards a teacher for explaining a solution "
                      "it was shown, but config.data.prompt_context='' shows the policy only the question; set "
                      "config.data.prompt_context='answer' (or 'solution')")


@register("understanding", factory=True)
def make_understanding(rl, tokenizer) -> Understanding:
  """The reward for config.rl; ValueError (a ConfigError in rr.train.rl_config) for settings it cannot score."""
  if not rl.understanding_student:
    raise ValueError("rewards has 'understanding' (RLT), which scores the teacher with a frozen student, but "
                     "understanding_student is ''; set config.rl.understanding_student to an rr run's --workdir "
                     "(or its checkpoints/ directory) or a Hugging Face model directory that shares the tokenizer")
  if not os.path.isdir(rl.understanding_student):
    raise ValueError(f"understanding_student={rl.understanding_student!r} is not a directory; point "
                     "config.rl.understanding_student at an rr run's --workdir or a Hugging Face model directory")
  if rl.top_k or rl.top_p < 1.0:
    raise ValueError(f"rewards has 'understanding', whose KL term reads the sampler's log-probs as the teacher's, "
                     f"but top_k={rl.top_k} / top_p={rl.top_p} sample from a truncated distribution; set "
                     "config.rl.top_k=0 and config.rl.top_p=1.0")
  if rl.understanding_alpha < 0 or rl.understanding_kl_weight < 0:
    raise ValueError(f"understanding_alpha={rl.understanding_alpha} and understanding_kl_weight="
                     f"{rl.understanding_kl_weight} must be >= 0 (config.rl.understanding_alpha, "
                     "config.rl.understanding_kl_weight)")
  return Understanding(rl.understanding_student, tokenizer, rl.understanding_alpha, rl.understanding_kl_weight,
                       rl.temperature)
