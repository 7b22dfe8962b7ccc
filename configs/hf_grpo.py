"""GRPO straight from a local Hugging Face model directory, or from an rr SFT run of it.

`python -m rr.main --config configs/hf_grpo.py:model=/models/Qwen2.5-0.5B-Instruct --workdir /tmp/hf_grpo`
starts from the directory's weights (zero-RL); add `--config.init_checkpoint=/tmp/hf_sft` to start from an SFT
run of configs/hf_sft.py instead. Data as in configs/hf_sft.py (`train=PATH,test=PATH,format=gsm8k`; only
questions and final answers are needed). The recipe: correctness plus 0.1 format, group-normalised advantages,
DAPO clip-higher and token-mean loss with dynamic sampling, no KL, TRL's usual RL learning rate of 1e-6.
"""

import os
import runpy

from rr.config import base_config, parse_arg, use_data_files, use_hf_model


def get_config(arg=None):
  args = parse_arg(arg, model="", train="", test="", format="gsm8k", runlocal=False)
  c = base_config()
  c.trainer = "grpo"
  use_hf_model(c, args.model, "configs/hf_grpo.py")
  if args.train or args.test:  # a test file alone serves python -m rr.eval
    use_data_files(c, args.train, args.test, args.format)
  c.data.max_len = 512
  c.model.dtype = "bfloat16"
  c.model.remat = "full"
  c.optim.lr = 1e-6
  c.optim.warmup_steps = 10
  c.optim.weight_decay = 0.0
  c.train.steps = 300
  c.train.log_every = 5
  c.train.eval_every = 50
  c.train.checkpoint_every = 50
  c.eval.num_examples = 200
  c.eval.batch_size = 64
  c.eval.max_new_tokens = 384
  c.rl.prompts_per_step = 16
  c.rl.group_size = 8
  c.rl.max_new_tokens = 384
  c.rl.eps_high = 0.28
  c.rl.aggregation = "token-mean"
  c.rl.dynamic_sampling = True
  if args.runlocal:
    here = os.path.dirname(os.path.abspath(__file__))
    runpy.run_path(os.path.join(here, "hf_sft.py"))["shrink_runlocal_hf"](c)
    c.optim.lr = 1e-4
    c.train.log_every = 1
  return c
