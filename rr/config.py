"""Configs: one schema of every known key, config files that start from it, and checks with clear errors.

A config file is a Python file with `get_config(arg)` returning an `ml_collections.ConfigDict` (big_vision
style). `arg` is the text after the colon in `--config configs/x.py:runlocal,train=PATH`; `parse_arg` turns
it into a ConfigDict of named values. Every key a config sets must exist in `base_config()`: a typo is an
error that names the key, never a silently ignored field.
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import os
import re
from typing import Any

import ml_collections

from rr.errors import UserError
from rr import files


class ConfigError(UserError, ValueError):
  """A config file, key or value is wrong; the message says which and how to fix it."""


DATA_SOURCES = ("task", "jsonl", "parquet", "tfds")
DATA_FORMATS = ("rationale", "gsm8k", "math", "choice", "text")  # text: plain documents (rr.data.text_corpus)
MODEL_DTYPES = ("float32", "bfloat16")
REMAT_POLICIES = ("none", "full", "dots")  # rr.models.decoder maps each to a jax.checkpoint policy
ATTENTION_IMPLEMENTATIONS = ("auto", "xla", "cudnn")  # rr.models.layers
PRIVILEGED_CONTEXTS = ("solution", "answer")  # what a privileged self-teacher reads (config.distill.teacher="self")
MESH_AXES = ("data", "fsdp", "tensor")  # rr.sharding's mesh; config.mesh.rules name these
GUIDE_HINTS = ("rationale", "answer")  # what Guide's hint holds (config.rl.guide_hint)
PREFIX_LOSSES = ("advantage", "nll")  # Prefix-RFT's term on the demonstration prefix (config.rl.prefix_loss)
SFT_STEP_SCHEDULES = ("none", "relift", "sasr")  # SFT steps between RL steps (config.rl.sft_steps)
LORA_TARGETS = ("q", "k", "v", "o", "gate", "up", "down")  # rr.models.lora.TARGETS: the projections LoRA adapts


def base_config() -> ml_collections.ConfigDict:
  """Every key rr knows, with its default. Config files override these; nothing else is allowed."""
  c = ml_collections.ConfigDict()
  c.trainer = "sft"  # which trainer runs: a name in rr.train.TRAINERS (sft, grpo, stages, or registered)
  c.seed = 0
  c.init_checkpoint = ""  # fresh runs start from these params: another run's --workdir (or its checkpoints/)
  # Trainer "stages" (rr.train.stages): a job of trainers in order, stage <name> in WORKDIR/<name>/, each after
  # the first starting from the one before. `stages` lists the names ("sft,grpo"); `stage.<name>` is the one open
  # group: that stage's `trainer` and its overrides of any key here, e.g. c.stage.grpo = {"trainer": "grpo",
  # "train": {"steps": 600}}; set `init_checkpoint` in it to start elsewhere ("" = fresh).
  c.stages = ""
  c.stage = ml_collections.ConfigDict()

  c.data = ml_collections.ConfigDict()
  c.data.source = "task"  # "task" (generated, embedded), "jsonl" / "parquet" (local files) or "tfds" (array_record)
  c.data.format = "rationale"  # record layout of file/TFDS data: rationale | gsm8k | math | choice | text (rr.data)
  c.data.task = "addition"  # rr.tasks name, when source == "task"
  c.data.difficulty = 3
  # Mixed difficulty: > data.difficulty draws each generated question's difficulty uniformly from
  # data.difficulty..data.difficulty_max (each Example records its own); 0 = every question at data.difficulty
  c.data.difficulty_max = 0
  # The test split's levels when they differ from the train's (composition depth: train on depths 1-2, test on
  # 1-5); -1 = data.difficulty / data.difficulty_max
  c.data.test_difficulty = -1
  c.data.test_difficulty_max = -1
  # Which questions a generated task's splits hold: -1 = config.seed. Fix it to vary only the init and batch
  # order over seeds, e.g. to train every seed on one teacher's data (data.rationales_path).
  c.data.seed = -1
  c.data.train_size = 20_000  # generated teacher rationales in the train split
  c.data.test_size = 500
  c.data.train_path = ""  # JSONL / Parquet paths, when source is "jsonl" or "parquet"
  c.data.test_path = ""
  c.data.tfds_name = ""  # source "tfds": a prepared dataset's name (python -m rr.data.prepare), read without TF
  c.data.tfds_dir = ""  # its TFDS data_dir
  c.data.train_split = "train"  # TFDS split names
  c.data.test_split = "test"
  c.data.max_len = 64  # tokens of prompt + completion + eos; longer examples are an error, never truncated
  # Teacher data (the "teach" trainer's data.jsonl, or its workdir): the train split's rationales and answers
  # become those records' (a generated task keeps its questions' verifiers and step checkers). For SFT-side
  # trainers; an RL stage reads the gold answers, so it sets this back to "".
  c.data.rationales_path = ""
  c.data.thought_dropout = 0.0  # TON: each SFT row's rationale is an empty <think></think> with this probability
  # SFT: several short examples per row, each attending only to itself (segment ids), rows filled up to max_len
  c.data.packing = False
  # What the model reads before each question, in the sft, grpo and teach trainers: "" (nothing), or the gold "answer"
  # or "solution" (rationale and answer) and a newline: an RLT teacher that explains a known solution (issue 15).
  # Rewards, evaluation and teacher-data records still read the plain question.
  c.data.prompt_context = ""

  c.tokenizer = ml_collections.ConfigDict()
  c.tokenizer.kind = "char"  # "char" (built in) or "hf" (a local Hugging Face tokenizer directory)
  c.tokenizer.path = ""  # "" with kind "hf" = config.model.hf_path
  c.tokenizer.chat_template = False  # hf: prompts go through the tokenizer's chat template as one user turn
  c.tokenizer.system_prompt = ""  # chat_template: an optional system turn before the question

  c.model = ml_collections.ConfigDict()
  c.model.preset = "tiny"  # rr.models.PRESETS; ignored when hf_path is set
  c.model.hf_path = ""  # a local Hugging Face model directory: its config.json is the model, its weights the start
  c.model.dtype = "float32"  # compute dtype
  c.model.param_dtype = "float32"  # "bfloat16" keeps float32 master weights in the optimiser state
  c.model.remat = "none"  # activation rematerialisation per layer: none | full | dots (rr.models.REMAT_POLICIES)
  c.model.embed_one_hot = True  # one-hot matmul embedding: faster backward than a gather on XLA:CPU
  # The attention core: "xla" (einsum + softmax, any backend), "cudnn" (jax.nn.dot_product_attention's fused
  # cuDNN kernel, GPU only), "auto" (cudnn on a GPU, xla elsewhere)
  c.model.attention = "auto"

  c.optim = ml_collections.ConfigDict()
  c.optim.lr = 1e-3
  c.optim.min_lr_ratio = 0.1  # cosine decays to lr * min_lr_ratio
  c.optim.warmup_steps = 100
  c.optim.weight_decay = 0.01
  c.optim.b1 = 0.9
  c.optim.b2 = 0.98
  c.optim.clip_norm = 1.0  # global gradient-norm clipping; 0 = off

  c.train = ml_collections.ConfigDict()
  c.train.steps = 2000
  c.train.batch_size = 64
  c.train.log_every = 50
  c.train.eval_every = 500  # 0 = only at the end
  c.train.checkpoint_every = 500  # a checkpoint is also written at the end and on Ctrl-C / SIGTERM
  c.train.keep_checkpoints = 0  # 0 = keep every checkpoint this run writes
  # Terms of the objective, by registered name (rr.train.objectives): "" = the trainer's own composition
  # (sft: nll; grpo: policy, plus kl / entropy / value when rl.kl_beta, rl.entropy_coef or a value-head
  # advantage estimator ask for them). E.g. "policy,kl,my_term" after rr.train.objectives.register_term.
  c.train.loss_terms = ""
  # Gradient accumulation: each step's batch runs as this many micro-batches of batch_size / micro_batches rows,
  # whose gradients add up to the full batch's (every term normalised over the whole batch), then one update
  c.train.micro_batches = 1
  # Cross-entropy over chunks of this many tokens from the final hidden states (the lm_head applied per chunk,
  # recomputed in the backward), so float32 B x T x V logits are never held at once; 0 = the plain full logits
  c.train.loss_chunk_tokens = 0

  c.lora = ml_collections.ConfigDict()  # low-rank adapters over frozen weights (docs/methods.md, "LoRA")
  c.lora.rank = 0  # 0 = off: every weight trains
  c.lora.alpha = 16.0  # the adapters' update is (alpha / rank) * A @ B
  c.lora.targets = "q,k,v,o,gate,up,down"  # projections that get adapters, by module name
  c.lora.base_dtype = "bfloat16"  # the frozen weights' storage dtype

  c.eval = ml_collections.ConfigDict()
  c.eval.num_examples = 500  # held-out examples sampled at each evaluation (<= data.test_size)
  c.eval.batch_size = 256
  c.eval.max_new_tokens = 64

  c.distill = ml_collections.ConfigDict()  # the "kd" objective term (docs/methods.md, "Logit distillation")
  c.distill.teacher = ""  # an rr workdir or a Hugging Face directory, any size, with the student's tokenizer
  c.distill.teacher_dtype = "float32"  # or "bfloat16": a frozen model needs no float32 master
  c.distill.divergence = "forward_kl"  # forward_kl (KL(teacher || student)) | reverse_kl | jsd
  c.distill.beta = 0.5  # jsd's mixture weight, 0 < beta < 1
  c.distill.temperature = 1.0  # both distributions at logits / T
  c.distill.top_k = 0  # > 0: both distributions restricted to the teacher's top-k tokens, renormalised
  c.distill.weight = 1.0  # the term's weight next to the others (e.g. train.loss_terms=nll,kd)
  # Top-k teacher logits cached on disk (needs top_k > 0): built from config.distill.teacher on first use, read
  # back by later runs on the same data (every seed of an experiment); a cache of other data is an error.
  c.distill.logit_cache = ""
  c.distill.alpha = 0.5  # distilling step-by-step: alpha * CE(answer | "predict: " x) + (1 - alpha) * CE(rationale | "explain: " x)
  # Trainer "gkd" (on-policy distillation): each step's batch is sampled from the student with probability
  # on_policy (GKD's lambda; 0 = supervised KD on the fixed sequences), then scored token by token by the teacher.
  c.distill.on_policy = 0.5
  c.distill.max_new_tokens = 48  # gkd: completion tokens sampled from the student (and the width of fixed ones)
  c.distill.sample_temperature = 1.0  # gkd: the student's sampling temperature
  # teacher = "self": privileged self-distillation, the student itself (no gradient) reading this gold context
  # before the question: "solution" (rationale and answer) or "answer"
  c.distill.privileged_context = "solution"

  c.teach = ml_collections.ConfigDict()  # trainer "teach": sample teacher rationales into a dataset (docs/methods.md)
  c.teach.teacher = ""  # an rr workdir or Hugging Face directory; "" = config.init_checkpoint (ReST-EM rounds)
  c.teach.teacher_dtype = "float32"
  c.teach.samples = 4  # k rationales per question
  c.teach.temperature = 1.0
  c.teach.top_k = 0
  c.teach.top_p = 1.0
  c.teach.max_new_tokens = 64
  c.teach.questions_per_chunk = 64  # questions sampled together and saved as one chunk (the unit of resume)
  # Which records are kept, in order: correct (the task's verifier), wrong (rejected by it), consistent (the answer
  # agrees with the majority of the question's k samples), length (teach.min_tokens..max_tokens), dedup (one copy of
  # each rationale and answer per question). Unfinished (no eos) and unparsed completions are never kept.
  c.teach.filters = "correct,dedup"
  c.teach.min_tokens = 0  # length filter: completion tokens, eos included; 0 = no bound
  c.teach.max_tokens = 0
  c.teach.max_per_question = 0  # keep at most this many records per question; 0 = all that pass
  c.teach.rationalise = False  # STaR: a question with no kept sample is sampled again with its answer as a hint
  c.teach.tfds_name = ""  # also write the records as a TFDS dataset of this name into WORKDIR/tfds
  # SaySelf (2405.20974): each record's answer ends with "confidence: c", c the share of the question's k samples
  # whose answer agrees with the record's (its vote key), so SFT on the records teaches stated confidence
  c.teach.confidence = False

  # Contrastive rationale distillation (trainer "dpo"; QCRD, DPO with rationales, docs/methods.md): pairs of a chosen
  # (the teacher's) and a rejected (the student's wrong) rationale for one question
  c.dpo = ml_collections.ConfigDict()
  # a "teach" workdir (or its data.jsonl) of the student's own samples, filtered "wrong": the rejected rationales
  c.dpo.negatives = ""
  c.dpo.beta = 0.1  # DPO's beta on the policy-vs-reference log-ratio margin
  c.dpo.nll_weight = 1.0  # weight of the NLL on the chosen rationale next to the DPO loss (QCRD keeps both)
  c.dpo.reference = ""  # the frozen reference: "" = the run's starting params (config.init_checkpoint)

  c.rl = ml_collections.ConfigDict()  # trainer "grpo": the GRPO family (docs/methods.md)
  c.rl.prompts_per_step = 8
  c.rl.group_size = 8  # completions per prompt (G); the step's batch is prompts_per_step * group_size
  c.rl.max_new_tokens = 48
  c.rl.temperature = 1.0
  c.rl.top_k = 0
  c.rl.top_p = 1.0
  c.rl.prompt_source = "uniform"  # which questions each step samples: a registered rr.train.sources name
  # prompt_source "sec" (SEC curriculum, 2505.14970): a bandit over the questions' difficulty levels whose reward
  # is a level's mean |advantage|; Q <- alpha * r + (1 - alpha) * Q, levels drawn with p ~ exp(Q / temperature)
  c.rl.curriculum_alpha = 0.5
  c.rl.curriculum_temperature = 1.0
  # Guide (2506.13923, docs/methods.md "Guide"): a group whose G rollouts all fail is sampled again with a hint in
  # the prompt, and the policy without the hint trains on those rollouts, importance-weighted by
  # rho / (rho + gamma), gamma the rl.guide_quantile quantile of the guided tokens' ratios
  c.rl.guide = False
  c.rl.guide_hint = "rationale"  # "rationale": the first guide_hint_fraction of the teacher's steps; "answer"
  c.rl.guide_hint_fraction = 0.5
  c.rl.guide_quantile = 0.9
  # Prefix-RFT (2507.01679, docs/methods.md "Prefix-RFT"): this many rollouts of each group continue a prefix of
  # the question's demonstration, floor(l * |demo|) tokens, l ~ U[low_t, prefix_high], low_t cosine from
  # prefix_low_start to prefix_low_end over the run; the prefix tokens get the "prefix" term (on the
  # prefix_entropy_top share of them with the highest entropy), the continuations the policy term; 0 = off
  c.rl.prefix_rollouts = 0
  c.rl.prefix_high = 0.95
  c.rl.prefix_low_start = 0.95
  c.rl.prefix_low_end = 0.05
  c.rl.prefix_entropy_top = 0.2
  c.rl.prefix_loss = "advantage"  # "advantage": -A log pi on the prefix tokens (the paper); "nll": -log pi
  c.rl.prefix_weight = 1.0
  # SFT steps on demonstrations between RL steps: "none"; "relift" (2506.07527): questions whose G rollouts all
  # fail are buffered with their demonstrations, one SFT step (NLL - relift_entropy_coef * entropy) each time
  # rl.relift_buffer are held; "sasr" (2505.13026): each step is an SFT step with probability g / (g + g0), g the
  # SFT gradient norm now and g0 at the start, else an RL step (docs/methods.md)
  c.rl.sft_steps = "none"
  c.rl.relift_buffer = 128
  c.rl.relift_entropy_coef = 0.001
  c.rl.sft_batch_size = 64  # sasr: demonstrations per SFT step
  # Stop once the run has sampled this many completion tokens (hinted resamples and prefixed rollouts included),
  # so methods compare at the same sampling budget; 0 = run config.train.steps
  c.rl.max_sampled_tokens = 0
  # Rewards for the rationale itself (issue 15, docs/methods.md)
  # RLT's "understanding" reward (2506.08388): a frozen student (an rr workdir or HF directory) reads the teacher's
  # explanation; r = mean + alpha * min of its log-probs of the solution, minus kl_weight * (mean + alpha * max) of
  # the explanation's teacher-vs-student log-ratios
  c.rl.understanding_student = ""
  c.rl.understanding_alpha = 0.01
  c.rl.understanding_kl_weight = 3.0
  # RLP's "info_gain" reward (2510.01265): the log-likelihood gain of the next rl.info_gain_tokens tokens of plain
  # text after a sampled thought, over an EMA of the policy (decay rl.info_gain_ema) that reads no thought
  c.rl.info_gain_tokens = 8
  c.rl.info_gain_ema = 0.999
  # "think_skip" (TON 2505.16854 / AdaR1): 1 for a right answer with an empty rationale on a question of difficulty
  # 1..rl.easy_difficulty, else 0 (weighted next to correctness; difficulty 0, no level known, is never easy)
  c.rl.easy_difficulty = 2
  # "cosine_length" (2502.03373): correctness shaped by length L, from the *_short value at L = 0 to the *_long
  # value at L = rl.max_new_tokens along a cosine; rl.cosine_exceed for a completion cut off without eos
  c.rl.cosine_correct_short = 2.0
  c.rl.cosine_correct_long = 1.0
  c.rl.cosine_wrong_short = -10.0
  c.rl.cosine_wrong_long = 0.0
  c.rl.cosine_exceed = -10.0
  c.rl.repetition_ngram = 8  # "repetition": minus the share of the completion's token n-grams repeating an earlier one
  # The frozen reference policy of rl.kl_beta: "" = the run's starting params, else an rr workdir / checkpoints
  # directory or a Hugging Face model directory (rr.train.frozen.load_frozen)
  c.rl.reference = ""
  c.rl.rewards = "correctness,format"  # registered reward names (rr.rewards.register), comma-separated
  c.rl.reward_weights = "1.0,0.1"  # one weight per reward
  # How the weighted rewards make one reward per completion: weighted_sum | normalize_then_sum (GDPO: each
  # reward normalised in its group, then weighted) | gate (Posterior-GRPO: process rewards such as
  # step_correctness count only when correctness is 1; needs both in rl.rewards). rr.rewards.combine.
  c.rl.reward_combine = "weighted_sum"
  c.rl.length_target = 32  # tokens; the "length_penalty" reward is 0 up to here, then linear
  c.rl.overlong_buffer = 16  # DAPO's L_cache for the "overlong" reward (L_max = rl.max_new_tokens)
  c.rl.advantage = "grpo"  # grpo | drgrpo | rloo | reinforce++ | ppo (value head + GAE; group_size 1 is fine)
  c.rl.advantage_scale = "group"  # grpo only: std of the group or of the batch
  c.rl.epochs = 1  # mu: optimiser steps on each batch of rollouts
  c.rl.eps_low = 0.2
  c.rl.eps_high = 0.2  # DAPO clip-higher: 0.28
  c.rl.ratio_level = "token"  # "sequence" = GSPO
  c.rl.clip_mode = "clip"  # "gppo" keeps gradients on clipped tokens
  c.rl.dual_clip_c = 0.0
  c.rl.aggregation = "seq-mean-token-mean"  # token-mean (DAPO) | seq-mean-token-sum-norm (Dr.GRPO)
  c.rl.kl_beta = 0.0  # > 0 builds a frozen reference copy of the initial params
  c.rl.kl_estimator = "k3"  # k1 | k2 | k3: the logged `kl` (and, with kl_mode "loss", the term differentiated)
  # gradient: the sequence KL's score-function gradient (2506.09477) | loss: TRL's k_n differentiated |
  # reward: beta * sum_t k_t subtracted from each completion's reward before the advantages
  c.rl.kl_mode = "gradient"
  c.rl.entropy_coef = 0.0
  c.rl.mask_truncated = False
  c.rl.dynamic_sampling = False  # DAPO: drop groups with equal rewards and sample more prompts
  c.rl.max_sampling_rounds = 3  # cap on sampling rounds per step (dynamic sampling / difficulty filter)
  c.rl.pass_rate_min = 0.0  # balanced difficulty filter: keep groups whose pass rate is in [min, max]
  c.rl.pass_rate_max = 1.0  # (2504.03380 starts from 0.25 / 0.75); needs the correctness reward
  c.rl.group_filters = ""  # more registered group filters (rr.train.groups.register_filter), comma-separated
  c.rl.gae_gamma = 1.0  # ppo: discount over completion tokens (the reward comes on the last one)
  c.rl.gae_lambda = 0.95  # ppo: GAE lambda (1 = Monte Carlo returns, 0 = one-step TD)
  c.rl.vf_coef = 0.1  # ppo: weight of the value loss next to the policy loss (the trunk is shared)
  c.rl.value_clip = 0.2  # ppo: values move at most this far from the rollout's values per batch
  c.rl.whiten_advantages = True  # ppo: advantages to mean 0, std 1 over the batch's active tokens

  c.mesh = ml_collections.ConfigDict()  # rr.sharding: axes ("data", "fsdp", "tensor")
  c.mesh.data = -1  # devices that split the batch only; -1 = all that fsdp and tensor leave
  c.mesh.fsdp = 1  # devices that split the batch and each parameter (ZeRO-3 style: gathered at use)
  c.mesh.tensor = 1  # devices that split heads, MLP and vocabulary (tensor parallel)
  # Logical axis -> mesh axes ("" = replicated, "data,fsdp" = both). The sampler decodes with these rules less
  # fsdp (its params gathered once per rollout, not per token).
  c.mesh.rules = ml_collections.ConfigDict()
  c.mesh.rules.batch = "data,fsdp"
  c.mesh.rules.embed = "fsdp"
  c.mesh.rules.vocab = "tensor"
  c.mesh.rules.mlp = "tensor"
  c.mesh.rules.heads = "tensor"
  c.mesh.rules.kv_heads = "tensor"
  c.mesh.rules.head_dim = ""
  c.mesh.rules.norm = ""
  c.mesh.rules.lora = ""
  return c


def parse_arg(arg: str | None, **defaults: Any) -> ml_collections.ConfigDict:
  """Parses `runlocal,train=PATH,size=3` into a ConfigDict, typed by the defaults given.

  A bare word is a boolean flag set to True; `key=value` takes the type of its default. Unknown names are
  errors, so a misspelt variant never runs the full job by accident.
  """
  out = ml_collections.ConfigDict(dict(defaults))
  for part in filter(None, (p.strip() for p in (arg or "").split(","))):
    key, eq, value = part.partition("=")
    key = key.strip()
    if key not in defaults:
      raise ConfigError(f"config argument {key!r} is unknown; this config accepts: {', '.join(sorted(defaults))}")
    out[key] = _coerce(value.strip(), defaults[key], f"config argument {key!r}") if eq else True
  return out


def load_config(spec: str, overrides: list[tuple[str, str]] = ()) -> ml_collections.ConfigDict:
  """Loads `path/to/config.py[:arg]`, applies command-line `overrides` (see apply_overrides) and returns the
  validated ConfigDict."""
  path, _, arg = spec.partition(":")
  get_config = file_function(path, "get_config", "config file", ConfigError,
                             "pass --config configs/<name>.py (see configs/)")
  config = get_config(arg or None)
  validate(config, source=path)
  if overrides:
    apply_overrides(config, overrides)
  return config


def file_function(path: str, name: str, kind: str, error: type[Exception], how: str):
  """The function `name` of the Python file at `path` (a config or experiment file), loaded as its own module;
  `error` naming the `kind` of file and `how` to pass one when it is missing, fails to load or lacks `name`."""
  if not os.path.isfile(path):
    raise error(f"{kind} {path!r} does not exist; {how}")
  module_spec = importlib.util.spec_from_file_location(f"rr_{kind.split()[0]}_{abs(hash(path))}", path)
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
  except Exception as e:
    raise error(f"{kind} {path!r} failed to load: {type(e).__name__}: {e}") from e
  if not hasattr(module, name):
    raise error(f"{kind} {path!r} has no {name}(arg) function")
  return getattr(module, name)


def apply_overrides(config: ml_collections.ConfigDict, overrides: list[tuple[str, str]]) -> None:
  """Sets `a.b=value` pairs from the command line, typed by the existing field; unknown keys are errors."""
  for dotted, text in overrides:
    if dotted.startswith("stage."):
      _set_stage_override(config, dotted, text)
      continue
    parent, key = _find_parent(config, dotted)
    old = parent[key]
    if isinstance(old, ml_collections.ConfigDict):
      raise ConfigError(f"--config.{dotted} is a group of keys, not a value; set one of: "
                        f"{', '.join(sorted(old.keys()))}")
    parent[key] = _coerce(text, old, f"--config.{dotted}")
  validate(config, source="the command line")


def validate(config: ml_collections.ConfigDict, source: str = "config") -> None:
  """Checks keys against the schema, value types, and the values that have a fixed set of choices."""
  _check_keys(config, base_config(), prefix="", source=source)
  if not isinstance(config.trainer, str) or not config.trainer:
    raise ConfigError(f"config.trainer={config.trainer!r} must name a trainer (sft, grpo, stages, or registered)")
  _check_choice(config, "data.source", DATA_SOURCES)
  _check_choice(config, "data.format", DATA_FORMATS)
  if config.data.source in ("jsonl", "parquet") and not (config.data.train_path or config.data.test_path):
    raise ConfigError(f"config.data.source={config.data.source!r} needs config.data.train_path (to train) or "
                      "config.data.test_path (to evaluate; both for a run that trains and evaluates)")
  if config.data.source == "tfds" and not (config.data.tfds_name and config.data.tfds_dir):
    raise ConfigError("config.data.source='tfds' needs config.data.tfds_name and config.data.tfds_dir "
                      "(build them with python -m rr.data.prepare)")
  if config.data.source == "task" and config.data.format not in ("rationale", "text"):
    raise ConfigError(f"config.data.format={config.data.format!r} applies to file or TFDS data; generated tasks "
                      "(config.data.source='task') have their own format: leave data.format='rationale' (or 'text': "
                      "the task's examples written out as plain documents)")
  if config.data.difficulty_max and config.data.difficulty_max < config.data.difficulty:
    raise ConfigError(f"config.data.difficulty_max={config.data.difficulty_max} is below "
                      f"config.data.difficulty={config.data.difficulty}; set it to 0 (every question at "
                      "data.difficulty) or to the highest level to draw (levels data.difficulty..difficulty_max)")
  test_low = config.data.difficulty if config.data.test_difficulty < 0 else config.data.test_difficulty
  test_max = config.data.difficulty_max if config.data.test_difficulty_max < 0 else config.data.test_difficulty_max
  if test_max and test_max < test_low:
    raise ConfigError(f"config.data.test_difficulty_max={test_max} is below config.data.test_difficulty={test_low} "
                      "(-1 reads the train split's data.difficulty / difficulty_max): set both test keys, -1 for "
                      "the train split's levels or 0 for one level")
  check_guided_rl(config.rl)
  _check_choice(config, "tokenizer.kind", ("char", "hf"))
  if config.tokenizer.kind == "hf" and not (config.tokenizer.path or config.model.hf_path):
    raise ConfigError("config.tokenizer.kind='hf' needs config.tokenizer.path (a local tokenizer directory) or "
                      "config.model.hf_path (a model directory that holds its tokenizer)")
  if config.tokenizer.chat_template and config.tokenizer.kind != "hf":
    raise ConfigError("config.tokenizer.chat_template=True needs config.tokenizer.kind='hf': the char tokenizer "
                      "has no chat template")
  _check_choice(config, "model.dtype", MODEL_DTYPES)
  _check_choice(config, "model.param_dtype", MODEL_DTYPES)
  _check_choice(config, "model.remat", REMAT_POLICIES)
  _check_choice(config, "model.attention", ATTENTION_IMPLEMENTATIONS)
  if config.train.micro_batches < 1 or config.train.loss_chunk_tokens < 0:
    raise ConfigError(f"config.train.micro_batches={config.train.micro_batches} must be >= 1 and "
                      f"config.train.loss_chunk_tokens={config.train.loss_chunk_tokens} >= 0 (0 = full logits)")
  _check_choice(config, "distill.privileged_context", PRIVILEGED_CONTEXTS)
  _check_choice(config, "data.prompt_context", ("",) + PRIVILEGED_CONTEXTS)
  rl = config.rl
  if config.data.prompt_context and (rl.guide or rl.prefix_rollouts or rl.sft_steps != "none"):
    raise ConfigError(f"config.data.prompt_context={config.data.prompt_context!r} shows the model the gold "
                      f"{config.data.prompt_context}; Guide, Prefix-RFT and the SFT steps inside RL build their own "
                      "prompts from the plain question, so turn them off (rl.guide=False, rl.prefix_rollouts=0, "
                      "rl.sft_steps='none') or set data.prompt_context=''")
  for key, low, high in (("data.thought_dropout", 0.0, 1.0), ("distill.alpha", 0.0, 1.0),
                         ("distill.on_policy", 0.0, 1.0)):
    group, name = key.split(".")
    if not low <= config[group][name] <= high:
      raise ConfigError(f"config.{key}={config[group][name]} must be in [{low}, {high}]")
  if not 0.0 < config.rl.curriculum_alpha <= 1.0:
    raise ConfigError(f"config.rl.curriculum_alpha={config.rl.curriculum_alpha} must be in (0, 1]: the SEC "
                      "curriculum's step size (1 keeps only the last step's reward)")
  if config.rl.curriculum_temperature <= 0.0:
    raise ConfigError(f"config.rl.curriculum_temperature={config.rl.curriculum_temperature} must be > 0 (the SEC "
                      "curriculum's p ∝ exp(Q / temperature); small = greedy, large = uniform)")
  for key in ("teach.samples", "teach.max_new_tokens", "teach.questions_per_chunk", "distill.max_new_tokens"):
    group, name = key.split(".")
    if config[group][name] <= 0:
      raise ConfigError(f"config.{key}={config[group][name]} must be positive")
  for key in ("train.steps", "train.batch_size", "train.log_every", "data.max_len", "eval.batch_size",
              "eval.max_new_tokens", "data.train_size", "data.test_size"):
    group, name = key.split(".")
    if config[group][name] <= 0:
      raise ConfigError(f"config.{key}={config[group][name]} must be positive")
  if config.eval.num_examples > config.data.test_size and config.data.source == "task":
    raise ConfigError(f"config.eval.num_examples={config.eval.num_examples} exceeds "
                      f"config.data.test_size={config.data.test_size}; lower the first or raise the second")
  _check_mesh(config)
  _check_lora(config)
  _check_stages(config)


def mesh_rule_axes(value: str) -> tuple[str, ...]:
  """The mesh axes a config.mesh.rules value names: "" -> (), "data,fsdp" -> ("data", "fsdp")."""
  return tuple(axis.strip() for axis in value.split(",") if axis.strip())


def _check_mesh(config) -> None:
  """Mesh sizes a mesh can have and rules that name its axes, refused before any device is touched."""
  if config.mesh.data != -1 and config.mesh.data < 1:
    raise ConfigError(f"config.mesh.data={config.mesh.data} must be >= 1, or -1 for every device that "
                      "config.mesh.fsdp and config.mesh.tensor leave")
  for key in ("fsdp", "tensor"):
    if config.mesh[key] < 1:
      raise ConfigError(f"config.mesh.{key}={config.mesh[key]} must be >= 1 (1 = that axis splits nothing)")
  for name, value in config.mesh.rules.items():
    axes = mesh_rule_axes(value)
    unknown = [axis for axis in axes if axis not in MESH_AXES]
    if unknown or len(set(axes)) != len(axes):
      raise ConfigError(f"config.mesh.rules.{name}={value!r} must be '' (replicated) or distinct mesh axes from "
                        f"{MESH_AXES}, comma-separated (e.g. 'data,fsdp')")


def _check_lora(config) -> None:
  """LoRA settings a run can build adapters from, refused before any work."""
  lora = config.lora
  if lora.rank < 0:
    raise ConfigError(f"config.lora.rank={lora.rank} must be >= 0 (0 = no adapters: every weight trains)")
  _check_choice(config, "lora.base_dtype", MODEL_DTYPES)
  if lora.rank == 0:
    return
  targets = [name.strip() for name in lora.targets.split(",") if name.strip()]
  unknown = [name for name in targets if name not in LORA_TARGETS]
  if unknown or not targets:
    close = difflib.get_close_matches(unknown[0], LORA_TARGETS, n=1) if unknown else []
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(f"config.lora.targets={lora.targets!r} names {unknown or 'no projection'}{hint}; with "
                      f"config.lora.rank={lora.rank} set it to comma-separated names among {', '.join(LORA_TARGETS)}")
  if lora.alpha <= 0:
    raise ConfigError(f"config.lora.alpha={lora.alpha} must be > 0: the adapters' update is alpha / rank * A @ B")


def check_guided_rl(rl) -> None:
  """The keys of issue 14's demonstration-guided RL (Guide, Prefix-RFT, ReLIFT, SASR, a token budget)."""
  _check_choice({"rl": rl}, "rl.guide_hint", GUIDE_HINTS)
  _check_choice({"rl": rl}, "rl.prefix_loss", PREFIX_LOSSES)
  _check_choice({"rl": rl}, "rl.sft_steps", SFT_STEP_SCHEDULES)
  for name, low, high in (("guide_hint_fraction", 0.0, 1.0), ("guide_quantile", 0.0, 1.0),
                          ("prefix_high", 0.0, 1.0), ("prefix_low_start", 0.0, 1.0), ("prefix_low_end", 0.0, 1.0),
                          ("prefix_entropy_top", 0.0, 1.0)):
    if not low <= rl[name] <= high:
      raise ConfigError(f"config.rl.{name}={rl[name]} must be in [{low}, {high}]")
  if max(rl.prefix_low_start, rl.prefix_low_end) > rl.prefix_high:
    raise ConfigError(f"config.rl.prefix_low_start={rl.prefix_low_start} and prefix_low_end={rl.prefix_low_end} "
                      f"must not exceed config.rl.prefix_high={rl.prefix_high}: l is drawn from U[low_t, high]")
  if not 0 <= rl.prefix_rollouts < rl.group_size:
    raise ConfigError(f"config.rl.prefix_rollouts={rl.prefix_rollouts} must be in [0, group_size={rl.group_size}): "
                      "the other rollouts of a group are the policy's own (Prefix-RFT uses 1)")
  for name in ("relift_buffer", "sft_batch_size"):
    if rl[name] <= 0:
      raise ConfigError(f"config.rl.{name}={rl[name]} must be positive")
  if rl.max_sampled_tokens < 0:
    raise ConfigError(f"config.rl.max_sampled_tokens={rl.max_sampled_tokens} must be >= 0 (0 = no token budget)")


def _check_choice(config, dotted: str, choices: tuple) -> None:
  group, name = dotted.split(".")
  value = config[group][name]
  if value not in choices:
    raise ConfigError(f"config.{dotted}={value!r} is not one of {choices}")


def _check_keys(config, schema, prefix: str, source: str) -> None:
  for key in config.keys():
    name = f"{prefix}{key}"
    if name == "stage" and key in schema:  # the one open group: stage names, each checked against the schema
      _check_stage_groups(config[key], source)
      continue
    if key not in schema:
      close = difflib.get_close_matches(key, list(schema.keys()), n=1)
      hint = f" (did you mean {prefix + close[0]!r}?)" if close else ""
      raise ConfigError(f"unknown config key {name!r} in {source}{hint}; known keys here: "
                        f"{', '.join(sorted(schema.keys()))}")
    value, expected = config[key], schema[key]
    if isinstance(expected, ml_collections.ConfigDict):
      if not isinstance(value, ml_collections.ConfigDict):
        raise ConfigError(f"config key {name!r} in {source} must be a group of keys, got {value!r}")
      _check_keys(value, expected, prefix=f"{name}.", source=source)
    elif not _same_kind(value, expected):
      raise ConfigError(f"config key {name!r} in {source} must be {type(expected).__name__}, "
                        f"got {type(value).__name__} {value!r}")


def _same_kind(value, expected) -> bool:
  if isinstance(expected, bool) or isinstance(value, bool):
    return isinstance(value, bool) and isinstance(expected, bool)
  if isinstance(expected, float):
    return isinstance(value, (int, float))
  return isinstance(value, type(expected))


def _find_parent(config, dotted: str, shown: str | None = None, under: str = ""):
  """(group, key) of `dotted` in `config`; `shown` and `under` name the flag and the group for the error."""
  parts = dotted.split(".")
  node = config
  for i, part in enumerate(parts):
    if not isinstance(node, ml_collections.ConfigDict) or part not in node:
      where = ".".join(([under] if under else []) + parts[:i]) or "config"
      choices = sorted(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
      close = difflib.get_close_matches(part, choices, n=1)
      hint = f" (did you mean {close[0]!r}?)" if close else ""
      raise ConfigError(f"--config.{shown or dotted}: unknown key {part!r} under {where}{hint}; "
                        f"known: {', '.join(choices)}")
    if i == len(parts) - 1:
      return node, part
    node = node[part]


def _coerce(text: str, like: Any, what: str) -> Any:
  """Parses command-line text into the type of the existing value."""
  try:
    if isinstance(like, bool):
      lowered = text.lower()
      if lowered in ("1", "true", "yes", "on"):
        return True
      if lowered in ("0", "false", "no", "off"):
        return False
      raise ValueError(text)
    if isinstance(like, int):
      return int(text)
    if isinstance(like, float):
      return float(text)
  except ValueError:
    raise ConfigError(f"{what}={text!r} is not a valid {type(like).__name__}") from None
  return text


# ------------------------------------------------------------------------------------------ stages

STAGE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # it names a directory, a config group and summary keys


def stage_names(config: ml_collections.ConfigDict) -> list[str]:
  """The names in `config.stages`, in the order they run."""
  return [n.strip() for n in config.stages.split(",") if n.strip()]


def stage_config(config: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
  """The config stage `name` runs with: the job's config under `config.stage.<name>`'s overrides, with no stages of
  its own. The job's config is not changed; chaining checkpoints is rr.train.stages' part (it knows the workdir)."""
  out = config.copy_and_resolve_references()
  overrides = out.stage[name]
  out.stages = ""
  out.stage = ml_collections.ConfigDict()
  _apply_group(out, overrides)
  return out


def same_run_config(config: ml_collections.ConfigDict, workdir: str) -> bool:
  """Whether the newest config `workdir` ran with (see `save_run_config`) is `config`, so a finished run of it
  need not run again."""
  existing = run_config_files(workdir)
  return bool(existing) and read_json_or_none(existing[-1]) == plain_dict(config)


def _apply_group(into: ml_collections.ConfigDict, overrides: ml_collections.ConfigDict) -> None:
  for key, value in overrides.items():
    if isinstance(value, ml_collections.ConfigDict) and isinstance(into.get(key), ml_collections.ConfigDict):
      _apply_group(into[key], value)
    else:
      into[key] = value


def _check_stage_groups(groups, source: str) -> None:
  """Each `stage.<name>` group holds keys of the schema (checked like a config file's) and no stages of its own."""
  if not isinstance(groups, ml_collections.ConfigDict):
    raise ConfigError(f"config key 'stage' in {source} must be a group of stage groups, got {groups!r}; set "
                      "config.stage.<name> = {'trainer': ..., <overrides>} for each name in config.stages")
  schema = base_config()
  for name, group in groups.items():
    if not isinstance(group, ml_collections.ConfigDict):
      raise ConfigError(f"config key 'stage.{name}' in {source} must be a group of keys (the stage's trainer and "
                        f"its overrides), got {group!r}")
    for key in ("stages", "stage"):
      if key in group:
        raise ConfigError(f"config key 'stage.{name}.{key}' in {source}: stages do not nest; list every stage in "
                          "config.stages and give each its own config.stage.<name> group")
    _check_keys(group, schema, prefix=f"stage.{name}.", source=source)


def _check_stages(config: ml_collections.ConfigDict) -> None:
  """config.stages and the config.stage groups name the same stages, each with a trainer, and every stage's
  derived config validates, so a bad stage stops the job before the first one trains."""
  names, groups = stage_names(config), list(config.stage.keys())
  if config.trainer == "stages" and not names:
    raise ConfigError("config.trainer='stages' needs config.stages: the stage names in order (e.g. 'sft,grpo'), "
                      "each with a config.stage.<name> group holding its trainer and overrides")
  for name in names:
    if not STAGE_NAME.fullmatch(name):
      raise ConfigError(f"config.stages={config.stages!r}: stage name {name!r} must be letters, digits and "
                        "underscores, not starting with a digit (it names the stage's directory and group)")
    if names.count(name) > 1:
      raise ConfigError(f"config.stages={config.stages!r} names {name!r} twice; each stage needs its own name "
                        "(e.g. round1, round2) and config.stage.<name> group")
    if name not in config.stage:
      close = difflib.get_close_matches(name, groups, n=1)
      hint = f" (did you mean {close[0]!r}?)" if close else ""
      raise ConfigError(f"config.stages names {name!r} but there is no config.stage.{name} group{hint}; add "
                        f"config.stage.{name} = {{'trainer': ..., <overrides>}} or drop {name!r} from config.stages")
  for name in groups:
    if name not in names:
      raise ConfigError(f"config.stage.{name} is not listed in config.stages={config.stages!r}; add {name!r} "
                        "there (stages run in that order) or delete the group")
  for name in names:
    trainer = config.stage[name].get("trainer", "")
    if not trainer:
      raise ConfigError(f"config.stage.{name}.trainer is required: the trainer this stage runs (sft, grpo, or "
                        "registered)")
    if trainer == "stages":
      raise ConfigError(f"config.stage.{name}.trainer='stages': stages do not nest; name the trainer this stage "
                        "runs (sft, grpo, or registered) and list every stage in config.stages")
    try:
      validate(stage_config(config, name), source=f"config.stage.{name}")
    except ConfigError as e:
      raise ConfigError(f"config.stage.{name}: {e}") from None


def _set_stage_override(config: ml_collections.ConfigDict, dotted: str, text: str) -> None:
  """`stage.<name>.a.b=value`: any schema key of an existing stage, set or added to its group, typed by the
  schema's field."""
  parts = dotted.split(".")
  name, path = parts[1], parts[2:]
  if name not in config.stage:
    close = difflib.get_close_matches(name, list(config.stage.keys()), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(f"--config.{dotted}: there is no stage {name!r}{hint}; stages: "
                      f"{', '.join(stage_names(config)) or 'none'} (a new stage goes in the config file: "
                      "config.stages and config.stage.<name>)")
  if not path:
    raise ConfigError(f"--config.{dotted} is a group of keys, not a value; set one of its keys: "
                      f"--config.{dotted}.<key>=VALUE (any key of the schema, e.g. train.steps)")
  parent, key = _find_parent(base_config(), ".".join(path), shown=dotted, under=f"stage.{name}")
  like = parent[key]
  if isinstance(like, ml_collections.ConfigDict):
    raise ConfigError(f"--config.{dotted} is a group of keys, not a value; set one of: "
                      f"{', '.join(sorted(like.keys()))}")
  node = config.stage[name]
  for part in path[:-1]:
    if part not in node:
      node[part] = ml_collections.ConfigDict()
    node = node[part]
  node[key] = _coerce(text, like, f"--config.{dotted}")


def use_hf_model(c: ml_collections.ConfigDict, model_dir: str, config_name: str) -> None:
  """Points a config at a local Hugging Face model directory: its architecture, weights, tokenizer and chat
  template. `config_name` (e.g. "configs/hf_sft.py") is named in the error when the directory is not given."""
  if not model_dir:
    raise ConfigError(f"{config_name} needs the model directory: --config {config_name}:model=/path/to/model_dir "
                      "(config.json, *.safetensors and the tokenizer files; rr never downloads)")
  c.model.hf_path = model_dir
  c.model.embed_one_hot = False  # real vocabularies are large: a gather, not a one-hot matmul
  c.tokenizer.kind = "hf"
  c.tokenizer.chat_template = True


def use_data_files(c: ml_collections.ConfigDict, train: str, test: str = "", data_format: str = "rationale") -> None:
  """Trains on local files (.parquet, else JSONL) laid out as `data_format` (rationale | gsm8k | math | choice);
  a test file alone (MATH-500 is one test.jsonl) is enough to evaluate."""
  c.data.source = "parquet" if (train or test).endswith(".parquet") else "jsonl"
  c.data.format = data_format
  c.data.train_path = train
  c.data.test_path = test


def shrink_for_runlocal(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The `runlocal` variant of any config: same code paths, seconds of work (tests and laptops)."""
  c.model.preset = "nano"
  c.data.train_size = min(c.data.train_size, 256)
  c.data.test_size = min(c.data.test_size, 16)
  c.train.steps = 12
  c.train.batch_size = 8
  c.train.log_every = 2
  c.train.eval_every = 8
  c.train.checkpoint_every = 8
  c.optim.warmup_steps = 2
  c.eval.num_examples = min(c.eval.num_examples, c.data.test_size)
  c.eval.batch_size = 16
  c.eval.max_new_tokens = min(c.eval.max_new_tokens, 32)
  return shrink_rl_for_runlocal(c)


def shrink_rl_for_runlocal(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The RL part of `runlocal`: 2 prompts x 4 completions of 16 tokens, one sampling round per step."""
  c.rl.prompts_per_step = 2
  c.rl.group_size = 4
  c.rl.max_new_tokens = 16
  c.rl.dynamic_sampling = False
  return c


# ------------------------------------------------------------------------------------------ config.json

RUN_CONFIG = "config.json"  # the resolved config a run writes into its workdir (rr.eval reads it back)


def run_config_files(workdir: str) -> list[str]:
  """The resolved configs a workdir has run with, oldest first: config.json, then config.2.json, ...
  (written when a resume's config differs; see `save_run_config`)."""
  found = []
  if files.isfile(os.path.join(workdir, RUN_CONFIG)):
    found.append((1, os.path.join(workdir, RUN_CONFIG)))
  for name in files.listdir(workdir):
    middle = name[len("config."):-len(".json")] if name.startswith("config.") and name.endswith(".json") else ""
    if middle.isdigit() and int(middle) >= 2:
      found.append((int(middle), os.path.join(workdir, name)))
  return [path for _, path in sorted(found)]


def is_run_config_file(path: str) -> bool:
  """Whether `path` is a config.json rr wrote (a dict with `trainer` and a `data` group), not a Hugging Face
  model's config.json of the same name; never raises."""
  data = read_json_or_none(path)
  return isinstance(data, dict) and "trainer" in data and isinstance(data.get("data"), dict)


def check_workdir_trainer(config: ml_collections.ConfigDict, workdir: str) -> None:
  """A workdir resumes its own run: another trainer there (a GRPO config on a finished SFT run's workdir) would
  restore that run's checkpoints and train nothing, so it is a ConfigError naming both and the fix."""
  existing = run_config_files(workdir)
  old = read_json_or_none(existing[-1]) if existing else None
  if isinstance(old, dict) and old.get("trainer") != config.trainer:
    raise ConfigError(f"--workdir {workdir} holds a {old.get('trainer')!r} run ({existing[-1]}), and this config's "
                      f"trainer is {config.trainer!r}: a workdir resumes its own run only. Pass a new --workdir (to "
                      f"start from that run: --config.init_checkpoint={workdir})")


def save_run_config(config: ml_collections.ConfigDict, workdir: str) -> str:
  """Writes the resolved `config` into `workdir` so a run says what it ran with and `rr.eval` needs no
  --config; returns the path that holds it.

  The first run writes config.json. A resume whose config equals the newest one written changes nothing. One
  that differs (a longer `train.steps` is the common case) is legitimate, but rr never rewrites a user's
  files: config.json stays as it was, the new config goes beside it as config.2.json (then config.3.json,
  ...), and stderr names the keys that changed. rr.eval reads the newest. Another trainer in the same workdir is
  refused before any work (check_workdir_trainer).
  """
  import sys

  values = plain_dict(config)
  existing = run_config_files(workdir)
  if existing:
    old = read_json_or_none(existing[-1])
    if old == values:
      return existing[-1]
    number = len(existing) + 1
    while files.exists(os.path.join(workdir, f"config.{number}.json")):
      number += 1
    path = os.path.join(workdir, f"config.{number}.json")
  else:
    path = os.path.join(workdir, RUN_CONFIG)
  files.makedirs(workdir)
  files.write_atomic(path, json.dumps(values, indent=2, sort_keys=True) + "\n")
  if existing:
    changed = _changed_keys(old, values) if isinstance(old, dict) else []
    shown = ", ".join(changed[:6]) + (f" and {len(changed) - 6} more" if len(changed) > 6 else "")
    print(f"rr: this run's config differs from {existing[-1]} in {shown or 'its contents'}; kept that file and "
          f"wrote {path}", file=sys.stderr)
  return path


def read_run_config(path: str) -> ml_collections.ConfigDict:
  """The config a run wrote (see `save_run_config`), checked like a config file. Keys this rr version has
  added since take their defaults; a key it does not know is an error naming the file."""
  data = read_json_or_none(path)
  if not isinstance(data, dict):
    raise ConfigError(f"{path} is not a config rr wrote (unreadable or not a JSON object); pass --config "
                      "configs/<name>.py[:arg], the config the run was trained with")
  _check_keys(ml_collections.ConfigDict(data), base_config(), prefix="", source=path)
  config = base_config()
  _merge(config, data)
  validate(config, source=path)
  return config


def _merge(into: ml_collections.ConfigDict, values: dict) -> None:
  for key, value in values.items():
    if isinstance(value, dict) and key in into:  # a stage.<name> group is new: assigned whole below
      _merge(into[key], value)
    else:
      into[key] = value


def plain_dict(config: ml_collections.ConfigDict) -> dict:
  """The config as JSON would read it back (so a resume compares like with like)."""
  return json.loads(json.dumps(config.copy_and_resolve_references().to_dict()))


def read_json_or_none(path: str):
  """The JSON at `path`, or None when it is missing or unreadable (a file rr may or may not have written yet)."""
  try:
    return json.loads(files.read_text(path))
  except (OSError, ValueError):
    return None


def _changed_keys(old: dict, new: dict, prefix: str = "") -> list[str]:
  out = []
  for key in sorted(set(old) | set(new)):
    a, b = old.get(key), new.get(key)
    if isinstance(a, dict) and isinstance(b, dict):
      out += _changed_keys(a, b, f"{prefix}{key}.")
    elif a != b:
      out.append(f"{prefix}{key} ({a!r} -> {b!r})")
  return out
