"""RLP (2510.01265): reinforce thinking on plain text, paid by the information gain a thought brings to the next
tokens over an EMA of the policy that reads no thought. No verifier.

`python -m rr.main --config configs/info_gain.py --workdir /tmp/rlp`; `:runlocal` shrinks it to seconds.
A job of two stages (trainer "stages", rr.train.stages):
  sft  configs/sft.py: 3-digit addition with the program's rationales, so the tiny model writes <think>...</think>
  rlp  GRPO from that checkpoint on the same task's examples written out as plain documents (data.format="text",
       rr.data.text_corpus), each cut at random points into a prefix and its next rl.info_gain_tokens = 8 tokens;
       reward "info_gain" (rr.rewards.info_gain: mean per-token log-likelihood gain of the continuation after the
       thought, over the EMA, decay 0.999), RLOO advantages (RLP's G / (G - 1) (r - mean r)), a 40-token thought
       budget (a 3-digit addition's thought is about 30), no KL.
The rlp stage's summary has the method's own measure at each evaluation: eval/info_gain (a greedy thought against
the policy's own no-thought prediction), eval/info_gain_over_empty and the continuations' NLLs (docs/methods.md).
"""

import os
import runpy

from rr.config import parse_arg, shrink_rl_for_runlocal


def get_config(arg=None):
  args = parse_arg(arg, runlocal=False)
  here = os.path.dirname(os.path.abspath(__file__))
  c = runpy.run_path(os.path.join(here, "sft.py"))["get_config"]("runlocal" if args.runlocal else None)
  c.trainer = "stages"
  c.stages = "sft,rlp"
  rl = c.rl
  rl.rewards, rl.reward_weights = "info_gain", "1"
  rl.advantage = "rloo"
  rl.info_gain_tokens = 8
  rl.info_gain_ema = 0.999
  rl.prompts_per_step, rl.group_size = 8, 8
  rl.max_new_tokens = 40
  rl.eps_high = 0.28  # DAPO's clip-higher and token-mean loss, as the other RL recipes
  rl.aggregation = "token-mean"
  c.stage.sft = {"trainer": "sft"}
  c.stage.rlp = {"trainer": "grpo", "data": {"format": "text"}, "train": {"steps": 300, "eval_every": 50},
                 "optim": {"lr": 5e-5, "warmup_steps": 30, "weight_decay": 0.0}, "eval": {"num_examples": 200}}
  if args.runlocal:
    shrink_rl_for_runlocal(c)
    c.stage.rlp.train.steps = 4
    c.stage.rlp.train.eval_every = 0
    c.stage.rlp.optim.warmup_steps = 1
    c.stage.rlp.eval.num_examples = 4
  return c
