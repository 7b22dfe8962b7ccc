"""Sampling from a Decoder: strategies, the jitted prefill + while_loop decode, and the host-side Sampler."""

from rr.sampler.sampler import SampleOutput, Sampler
from rr.sampler.strategies import Greedy, Sampling

__all__ = ["Greedy", "Sampling", "Sampler", "SampleOutput"]
