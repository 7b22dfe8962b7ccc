"""Data: tokenizers, JSONL user data, prompt/completion text and SFT batches."""

from __future__ import annotations

from rr.data.errors import DataError
from rr.data.jsonl import load_jsonl
from rr.data.prompts import decode_completion, encode_prompts, format_completion, format_prompt, parse_completion
from rr.data.sft_batches import SFTBatches
from rr.data.tokenizers import THINK_CLOSE, THINK_OPEN, CharTokenizer, HFTokenizer, Tokenizer, load_tokenizer

__all__ = ["CharTokenizer", "DataError", "HFTokenizer", "SFTBatches", "THINK_CLOSE", "THINK_OPEN", "Tokenizer",
           "decode_completion", "encode_prompts", "format_completion", "format_prompt", "load_jsonl",
           "load_tokenizer", "parse_completion"]
