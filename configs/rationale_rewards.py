"""Issue 15's RL methods that reward the rationale itself: configs/grpo.py:mixed plus one reward recipe each.

`python -m rr.main --config configs/rationale_rewards.py:method=gated --config.init_checkpoint=SFT_WORKDIR
--workdir W` starts from a `configs/sft.py:mixed` checkpoint (`,runlocal` shrinks it to seconds); the start each
method expects is in experiments/rationale_rewards.py. docs/methods.md has the formulas.

  grpo          plain GRPO: correctness alone (the baseline every RL row is compared with)
  gated         Posterior-GRPO (2508.05170): R = format + correctness + correctness * step_correctness
  ungated       the same three rewards summed: the step reward pays whether or not the answer is right
  length        Demystifying long CoT (2502.03373): the cosine length reward in place of correctness, plus the
                n-gram repetition penalty
  think_skip    TON / AdaR1: correctness plus 0.5 for a right answer with an empty rationale on an easy question
                (difficulty <= 2 digits); start from an SFT run with thought dropout
  calibration   RLCR's proper calibration reward, y - (c - y)^2 (SaySelf's data, RLCR's reward); start from an SFT
                run on confidence-annotated teacher data
  info_gain     RLP (2510.01265): the information gain of a thought about the next tokens of plain text, RLOO
                advantages, no verifier; the questions' program solutions written out as documents
  understanding RLT (2506.08388): the policy is a teacher that reads the gold answer; its reward is a frozen
                student's log-likelihood of the answer after the teacher's explanation, minus the KL term
                (rl.understanding_student names the student; start from a teacher SFT run with data.prompt_context)

Every method keeps the plain recipe (DAPO's clip-higher, token mean, dynamic sampling), so a row differs from `grpo`
by its rewards (and, for info_gain and understanding, by what the policy reads).
"""

import os
import runpy

from rr.config import ConfigError, parse_arg

GRPO_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "grpo.py")
METHODS = ("grpo", "gated", "ungated", "length", "think_skip", "calibration", "info_gain", "understanding")


def get_config(arg=None):
  args = parse_arg(arg, method="grpo", runlocal=False)
  if args.method not in METHODS:
    raise ConfigError(f"config argument method={args.method!r} is not one of {', '.join(METHODS)}; pass e.g. "
                      "configs/rationale_rewards.py:method=gated")
  c = runpy.run_path(GRPO_CONFIG)["get_config"]("mixed" + (",runlocal" if args.runlocal else ""))
  rl = c.rl
  rl.rewards, rl.reward_weights = "correctness", "1.0"
  if args.method in ("gated", "ungated"):
    rl.rewards, rl.reward_weights = "format,correctness,step_correctness", "1,1,1"
    rl.reward_combine = "gate" if args.method == "gated" else "weighted_sum"
  elif args.method == "length":
    # correctness at weight 0: the collector's pass counts (all-failed groups) read its column
    rl.rewards, rl.reward_weights = "cosine_length,correctness,repetition", "1,0,1"
  elif args.method == "think_skip":
    rl.rewards, rl.reward_weights = "correctness,think_skip", "1,0.5"
    rl.easy_difficulty = 2
  elif args.method == "calibration":
    rl.rewards, rl.reward_weights = "calibration", "1"
  elif args.method == "info_gain":
    rl.rewards, rl.reward_weights = "info_gain", "1"
    rl.advantage = "rloo"
    rl.info_gain_tokens, rl.info_gain_ema = 8, 0.999
    c.data.format = "text"  # the task's examples written out as documents, cut into prefixes and next tokens
    rl.dynamic_sampling = False  # every group's gains differ; there is nothing to filter
  elif args.method == "understanding":
    rl.rewards, rl.reward_weights = "understanding", "1"
    rl.dynamic_sampling = False
    c.data.prompt_context = "answer"
  return c
