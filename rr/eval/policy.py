"""A checkpoint loaded for use from Python (a notebook, a script): `rr.eval.load(checkpoint) -> Policy`.

`Policy.complete` samples completions of questions exactly as `python -m rr.eval` does (the run's tokenizer and
prompt format, the jitted Sampler under the run's mesh), and `Policy.score` scores one against its example with
the evaluation's own scoring (answer, whole-chain check, stated confidence), so what a notebook shows is what the
metrics count.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from rr.eval.run import checkpoint_config, make_sampler, prepare, read_params, sample
from rr.eval.scoring import Scored, score
from rr.tasks import Example


@dataclasses.dataclass
class Policy:
  config: object  # the resolved config the checkpoint is read with
  model_cfg: object  # rr.models.ModelConfig
  params: dict  # host arrays: the checkpoint's (a LoRA run's merged) or a Hugging Face directory's
  tokenizer: object
  examples: list  # the config's held-out questions (rr.tasks.Example), up to `num_examples`
  sampler: object  # rr.sampler.Sampler

  def complete(self, questions: Sequence[str | Example], *, num_samples: int = 1, temperature: float = 0.0,
               max_new_tokens: int | None = None, seed: int = 0) -> list[list[str]]:
    """num_samples completion texts per question (a string or an Example): greedy at temperature 0, else sampled
    at `temperature`; at most config.eval.max_new_tokens new tokens unless `max_new_tokens` says otherwise."""
    from rr.sampler import Greedy, Sampling

    if temperature < 0:
      raise ValueError(f"temperature={temperature} must be >= 0 (0 is greedy)")
    examples = [q if isinstance(q, Example) else Example(question=str(q), rationale="", answer="") for q in questions]
    strategy = Greedy() if temperature == 0 else Sampling(temperature=temperature)
    texts, _ = sample(self.sampler, self.params, self.tokenizer, examples, strategy=strategy, num_samples=num_samples,
                      max_new_tokens=max_new_tokens or self.config.eval.max_new_tokens,
                      batch_size=self.config.eval.batch_size, seed=seed)
    return texts

  def score(self, example: Example, text: str) -> Scored:
    """`text` scored against `example` as rr.eval scores it (its length here is the text's token count)."""
    return score(example, text, len(self.tokenizer.encode(text)))


def load(checkpoint: str, config=None, *, overrides=None, num_examples: int | None = None) -> Policy:
  """Loads `checkpoint` (a run's workdir, an rr checkpoints directory or a Hugging Face model directory) with
  `config` (a ConfigDict, a configs/<name>.py[:arg] spec, or None for the run's own config.json) and its
  `overrides` ({key: value}); every check on the inputs runs before the params are read."""
  config = checkpoint_config(checkpoint, config, overrides)
  prepared = prepare(checkpoint, config, out=None, ks=[1], samples=1, temperature=1.0, ece_bins=10,
                     num_examples=num_examples, writes=False)
  params = read_params(prepared)
  sampler = make_sampler(prepared.config, prepared.model_cfg, prepared.tokenizer)
  return Policy(config=prepared.config, model_cfg=prepared.model_cfg, params=params, tokenizer=prepared.tokenizer,
                examples=list(prepared.examples), sampler=sampler)

