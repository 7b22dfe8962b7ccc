"""Data: tokenizers, user and benchmark data (JSONL, Parquet, TFDS), answer checks, prompt text, SFT batches.

The TFDS modules (rr.data.tfds_builder, rr.data.tfds_source, rr.data.prepare) import tensorflow_datasets, so
they are not imported here; rr.data.inputs reaches them only for config.data.source == "tfds".
"""

from __future__ import annotations

from rr.data.answers import VERIFIERS, choice_letter, extract_answer, gsm8k_final, last_boxed, math_equal
from rr.data.benchmarks import FORMATS, load_examples, load_records
from rr.data.errors import DataError
from rr.data.jsonl import load_jsonl
from rr.data.prompts import decode_completion, encode_prompts, format_completion, format_prompt, parse_completion
from rr.data.sft_batches import SFTBatches
from rr.data.tokenizers import THINK_CLOSE, THINK_OPEN, CharTokenizer, HFTokenizer, Tokenizer, load_tokenizer

__all__ = ["CharTokenizer", "DataError", "FORMATS", "HFTokenizer", "SFTBatches", "THINK_CLOSE", "THINK_OPEN",
           "Tokenizer", "VERIFIERS", "choice_letter", "decode_completion", "encode_prompts", "extract_answer",
           "format_completion", "format_prompt", "gsm8k_final", "last_boxed", "load_examples", "load_jsonl",
           "load_records", "load_tokenizer", "math_equal", "parse_completion"]
