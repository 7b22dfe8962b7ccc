"""SFT on rationales, starting from a local Hugging Face model directory (Qwen2/2.5, Qwen3, Llama 3).

`python -m rr.main --config configs/hf_sft.py:model=/models/Qwen2.5-0.5B-Instruct --workdir /tmp/hf_sft`
The model's config.json gives the architecture, its safetensors the starting weights and its tokenizer files the
tokenizer; prompts go through the tokenizer's chat template. Data: the embedded addition task by default, or a
GSM8K / MATH / multiple-choice / rationale file with `train=PATH,test=PATH,format=gsm8k` (.jsonl or .parquet).
bf16 compute with float32 params (the optimiser's master copy) and full per-layer remat: the settings for a
0.5-1.5B model on one GPU. `:runlocal` shrinks steps and lengths for a tiny directory (tests).
"""

from rr.config import base_config, parse_arg, shrink_for_runlocal, use_data_files, use_hf_model


def get_config(arg=None):
  args = parse_arg(arg, model="", train="", test="", format="gsm8k", runlocal=False)
  c = base_config()
  c.trainer = "sft"
  use_hf_model(c, args.model, "configs/hf_sft.py")
  if args.train or args.test:  # a test file alone serves python -m rr.eval
    use_data_files(c, args.train, args.test, args.format)
  c.data.max_len = 512
  c.model.dtype = "bfloat16"
  c.model.remat = "full"
  c.optim.lr = 1e-5
  c.optim.warmup_steps = 30
  c.optim.weight_decay = 0.0
  c.train.steps = 500
  c.train.batch_size = 32
  c.train.log_every = 10
  c.train.eval_every = 100
  c.train.checkpoint_every = 100
  c.eval.num_examples = 200
  c.eval.batch_size = 64
  c.eval.max_new_tokens = 384
  if args.runlocal:
    shrink_runlocal_hf(c)
  return c


def shrink_runlocal_hf(c):
  """runlocal for a tiny model directory: float32, no remat, short sequences, a learning rate that moves it."""
  shrink_for_runlocal(c)
  c.model.dtype = "float32"
  c.model.remat = "none"
  c.data.max_len = 128
  c.optim.lr = 1e-3
