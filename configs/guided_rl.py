"""Issue 14's demonstration-guided RL and curricula: configs/grpo.py:mixed plus one method each.

`python -m rr.main --config configs/guided_rl.py:method=guide --config.init_checkpoint=SFT_WORKDIR --workdir W`
(method defaults to grpo) starts from a `configs/sft.py:mixed` checkpoint (`,task=countdown` or `,task=strings`
with the same task there; `,runlocal` shrinks it to seconds). docs/methods.md has each method's formula; the
settings are the papers' where they carry over to 8 prompts x 8 rollouts a step, and scaled where they count
questions:

  grpo        plain GRPO: configs/grpo.py:mixed (DAPO's clip-higher, token mean, dynamic sampling), no demonstrations
  guide       Guide (2506.13923): an all-failed group is sampled again with a hint, the first half of the teacher
              rationale's steps; squashed ratio with gamma the 0.9 quantile (the paper's)
  prefix_rft  Prefix-RFT (2507.01679): 1 rollout of each group continues a demonstration prefix, l ~ U[low_t, 0.95],
              low_t cosine 0.95 -> 0.05, the advantage term on the top 20% highest-entropy prefix tokens (the paper's)
  relift      ReLIFT (2506.07527): all-failed questions buffered with their demonstrations, one SFT step
              (NLL - 0.001 entropy) per full buffer; the buffer is 16 questions, not the paper's 128, so that it fills
              every few steps of 8 prompts as the paper's does within a few of its much larger steps
  sasr        SASR-style switching (2505.13026): each step is an SFT step on 64 demonstrations with probability
              g / (g + g0), the SFT gradient norm now over the first step's (our reading of the paper's signal)
  sec         SEC curriculum (2505.14970): a bandit over the difficulty levels, alpha 0.5, tau 1 (the paper's)

Every method shares the plain recipe, so a row of an experiment differs from `grpo` by its method only. The one
change to configs/grpo.py:mixed is the reward: correctness alone, without the 0.1 format reward. From an SFT start
that samples few right answers, the format reward is the only signal in an all-failed group, and its
group-normalised advantages move the policy without regard to the answer (docs/results.md, the distillation grid's GRPO
rows); without it an all-failed group has no signal at all, the case these methods are for.
"""

import os
import runpy

from rr.config import ConfigError, parse_arg

GRPO_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "grpo.py")
METHODS = ("grpo", "guide", "prefix_rft", "relift", "sasr", "sec")
RELIFT_BUFFER = 16  # questions; the paper's 128 scaled to 8 prompts a step
RELIFT_BUFFER_RUNLOCAL = 2  # 2 prompts a step: an SFT step within a runlocal run


def get_config(arg=None):
  args = parse_arg(arg, method="grpo", task="addition", runlocal=False)
  if args.method not in METHODS:
    raise ConfigError(f"config argument method={args.method!r} is not one of {', '.join(METHODS)}; pass e.g. "
                      "configs/guided_rl.py:method=guide")
  variant = f"mixed,task={args.task}" + (",runlocal" if args.runlocal else "")
  c = runpy.run_path(GRPO_CONFIG)["get_config"](variant)
  rl = c.rl
  rl.rewards, rl.reward_weights = "correctness", "1.0"
  if args.method == "guide":
    rl.guide = True
    rl.guide_hint = "rationale"
    rl.guide_hint_fraction = 0.5
    rl.guide_quantile = 0.9
  elif args.method == "prefix_rft":
    rl.prefix_rollouts = 1
    rl.prefix_high = 0.95
    rl.prefix_low_start, rl.prefix_low_end = 0.95, 0.05
    rl.prefix_entropy_top = 0.2
    rl.prefix_loss = "advantage"
  elif args.method == "relift":
    rl.sft_steps = "relift"
    rl.relift_buffer = RELIFT_BUFFER_RUNLOCAL if args.runlocal else RELIFT_BUFFER
    rl.relift_entropy_coef = 0.001
  elif args.method == "sasr":
    rl.sft_steps = "sasr"
    rl.sft_batch_size = 8 if args.runlocal else 64
  elif args.method == "sec":
    rl.prompt_source = "sec"
    rl.curriculum_alpha = 0.5
    rl.curriculum_temperature = 1.0
  return c
