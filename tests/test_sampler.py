"""Sampler tests against independent references: a plain forward pass without a
cache (rr.models.forward, unpadded, eager) and numpy re-implementations of the
sampling filters. A tiny model keeps every compile to a few seconds.
"""

import functools
import json
import os
import pickle
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from rr.models import forward, init_params, model_config
from rr.sampler import Greedy, Sampler, Sampling, decode

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VOCAB = 40
EOS, PAD = 1, 0
MAX_NEW = 6
# Lengths 2..11 share the prompt bucket 16; three prompts share the batch bucket 4.
PROMPTS = [[5, 9, 3, 17, 22, 8, 30, 11, 4, 26, 13], [7, 2], [12, 33, 6, 19, 25]]


@pytest.fixture(scope="module")
def cfg():
    return model_config("nano", vocab_size=VOCAB)


@pytest.fixture(scope="module")
def params(cfg):
    params = init_params(cfg, jax.random.PRNGKey(0))
    # Sharper logits than the 0.02 init gives (tied embeddings): varied greedy paths
    # and sampling distributions that the top-k / top-p filters visibly cut.
    params["embed"]["embedding"] = params["embed"]["embedding"] * 20.0
    return params


@pytest.fixture(scope="module")
def sampler(cfg):
    return Sampler(cfg, eos_id=EOS, pad_id=PAD)


@pytest.fixture(scope="module")
def greedy_out(sampler, params):
    return sampler(params, PROMPTS, max_new_tokens=MAX_NEW, strategy=Greedy())


REF_LEN = 32  # the reference pass runs on one fixed shape: one compile


@pytest.fixture(scope="module")
def full_forward_logits(cfg, params):
    """Logits (numpy, T x V) of a plain cache-free forward pass over prompt + generated.

    Right-padded to REF_LEN so one compile serves every length; the decoder is causal,
    so the padding after the sequence cannot change the logits of the sequence.
    """
    jitted = jax.jit(lambda tokens: forward(cfg, params, tokens))

    def logits(prompt, generated):
        sequence = list(prompt) + list(generated)
        tokens = np.full((1, REF_LEN), PAD, np.int32)
        tokens[0, :len(sequence)] = sequence
        return np.asarray(jitted(tokens)[0, :len(sequence)], np.float64)

    return logits


def log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def reference_log_probs(logits_V, temperature=1.0, top_k=0, top_p=1.0):
    """numpy: temperature, keep the k largest, then the smallest most-likely set with mass >= p."""
    scaled = np.asarray(logits_V, np.float64) / temperature
    order = np.argsort(-scaled, kind="stable")
    keep = np.zeros(scaled.shape, bool)
    candidates = order[:top_k] if top_k else order
    probs = np.exp(log_softmax(scaled[candidates]))
    mass = 0.0
    for token, prob in zip(candidates, probs):
        keep[token] = True
        mass += prob
        if mass >= top_p:
            break
    out = np.full(scaled.shape, -np.inf)
    out[keep] = log_softmax(scaled[keep])
    return out


# ---------------------------------------------------------------- strategies


def test_top_k_keeps_exactly_the_k_largest():
    logits = np.random.default_rng(0).normal(size=(4, 30)).astype(np.float32) * 3
    strategy = Sampling(top_k=3)
    log_probs = np.asarray(jax.jit(strategy.log_probs)(logits))
    for row in range(4):
        top3 = set(np.argsort(-logits[row])[:3])
        assert set(np.flatnonzero(np.isfinite(log_probs[row]))) == top3
        kept = sorted(top3)
        np.testing.assert_allclose(log_probs[row, kept], log_softmax(logits[row, kept].astype(np.float64)),
                                   atol=1e-5)
    draws = np.asarray(jax.jit(jax.vmap(lambda key: strategy.choose(logits, key)))(
        jax.random.split(jax.random.PRNGKey(1), 300)))  # 300 x 4
    for row in range(4):
        assert set(draws[:, row]) == set(np.argsort(-logits[row])[:3])


@pytest.mark.parametrize("top_p, kept_probs", [
    (0.4, {0.5}), (0.75, {0.5, 0.3}), (0.85, {0.5, 0.3, 0.15}), (0.99, {0.5, 0.3, 0.15, 0.05}),
    (1.0, {0.5, 0.3, 0.15, 0.05})])
def test_top_p_keeps_smallest_set_with_mass_at_least_p(top_p, kept_probs):
    probs = np.array([0.05, 0.5, 0.15, 0.3])
    log_probs = np.asarray(Sampling(top_p=top_p).log_probs(np.log(probs)[None].astype(np.float32)))[0]
    kept = np.isfinite(log_probs)
    assert {float(p) for p in probs[kept]} == kept_probs
    np.testing.assert_allclose(np.exp(log_probs[kept]), probs[kept] / probs[kept].sum(), atol=1e-6)


def test_temperature_top_k_top_p_match_numpy_reference():
    logits = np.random.default_rng(1).normal(size=(8, VOCAB)).astype(np.float32) * 2
    for strategy in [Sampling(temperature=0.7), Sampling(temperature=0.7, top_k=5),
                     Sampling(temperature=1.3, top_p=0.8), Sampling(temperature=0.5, top_k=10, top_p=0.9)]:
        got = np.asarray(jax.jit(strategy.log_probs)(logits))
        for row in range(len(logits)):
            want = reference_log_probs(logits[row], strategy.temperature, strategy.top_k, strategy.top_p)
            np.testing.assert_array_equal(np.isfinite(got[row]), np.isfinite(want), err_msg=str(strategy))
            finite = np.isfinite(want)
            np.testing.assert_allclose(got[row, finite], want[finite], atol=1e-5, err_msg=str(strategy))


def test_greedy_chooses_argmax_and_reports_raw_log_probs():
    logits = np.random.default_rng(2).normal(size=(5, VOCAB)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(Greedy().choose(logits, None)), logits.argmax(-1))
    np.testing.assert_allclose(np.asarray(Greedy().log_probs(logits)), log_softmax(logits.astype(np.float64)),
                               atol=1e-5)


@pytest.mark.parametrize("kwargs", [dict(temperature=0.0), dict(top_k=-1), dict(top_p=0.0),
                                    dict(top_p=1.5)])
def test_sampling_rejects_bad_settings(kwargs):
    with pytest.raises(ValueError):
        Sampling(**kwargs)


# ---------------------------------------------------------------- decoding


def test_greedy_is_deterministic_and_equals_full_forward_argmax(params, sampler, greedy_out, full_forward_logits):
    again = sampler(params, PROMPTS, max_new_tokens=MAX_NEW, strategy=Greedy())
    np.testing.assert_array_equal(again.tokens, greedy_out.tokens)
    np.testing.assert_array_equal(greedy_out.prompt_index, [0, 1, 2])
    for row, prompt in enumerate(PROMPTS):
        tokens, length = greedy_out.tokens[row], greedy_out.lengths[row]
        assert 1 <= length <= MAX_NEW
        assert length == MAX_NEW or tokens[length - 1] == EOS
        assert EOS not in tokens[:length - 1]
        for t in range(length):
            logits = full_forward_logits(prompt, tokens[:t])[-1]
            assert tokens[t] == logits.argmax(), (row, t)
            np.testing.assert_allclose(greedy_out.model_logprobs[row, t], log_softmax(logits)[tokens[t]],
                                       atol=1e-4)
        np.testing.assert_allclose(greedy_out.logprobs[row], greedy_out.model_logprobs[row], atol=1e-6)
        assert (tokens[length:] == PAD).all()


def test_sampled_log_probs_match_full_forward_and_filters(params, sampler, full_forward_logits):
    strategy = Sampling(temperature=0.7, top_k=5, top_p=0.9)
    prompts = PROMPTS[:2]
    out = sampler(params, prompts, max_new_tokens=MAX_NEW, strategy=strategy,
                  rng=jax.random.PRNGKey(3), num_samples=3)
    np.testing.assert_array_equal(out.prompt_index, [0, 0, 0, 1, 1, 1])  # prompt-major
    assert out.tokens.shape == out.logprobs.shape == out.model_logprobs.shape == (6, MAX_NEW)
    for row in range(6):
        prompt = prompts[out.prompt_index[row]]
        length = out.lengths[row]
        tokens = out.tokens[row, :length]
        logits_TxV = full_forward_logits(prompt, tokens)[len(prompt) - 1:]
        for t, token in enumerate(tokens):
            sampling_log_probs = reference_log_probs(logits_TxV[t], 0.7, 5, 0.9)
            assert np.isfinite(sampling_log_probs[token]), "token outside top-k / top-p"
            np.testing.assert_allclose(out.logprobs[row, t], sampling_log_probs[token], atol=1e-4)
            np.testing.assert_allclose(out.model_logprobs[row, t], log_softmax(logits_TxV[t])[token],
                                       atol=1e-4)
        assert (out.logprobs[row, length:] == 0).all() and (out.model_logprobs[row, length:] == 0).all()
    # Samples of one prompt are drawn independently (6 tokens from 5 candidates each: equal rows
    # would be a broken rng, not chance).
    assert len({out.tokens[r].tobytes() for r in range(3)}) > 1


def test_eos_stops_each_row_at_its_first_eos(cfg, params, greedy_out):
    assert EOS not in greedy_out.tokens, "pick another EOS: the reference run should not stop"
    eos = int(greedy_out.tokens[0, 2])  # row 0 now stops at step <= 2
    out = Sampler(cfg, eos_id=eos, pad_id=PAD)(params, PROMPTS, max_new_tokens=MAX_NEW, strategy=Greedy())
    for row in range(len(PROMPTS)):
        ref = greedy_out.tokens[row]
        hits = np.flatnonzero(ref == eos)
        length = hits[0] + 1 if len(hits) else MAX_NEW
        assert out.lengths[row] == length
        np.testing.assert_array_equal(out.tokens[row, :length], ref[:length])
        assert (out.tokens[row, length:] == PAD).all()
        np.testing.assert_allclose(out.logprobs[row, :length], greedy_out.logprobs[row, :length], atol=1e-5)
        assert (out.logprobs[row, length:] == 0).all() and (out.model_logprobs[row, length:] == 0).all()
    assert out.lengths[0] <= 3


def test_the_loop_stops_once_every_row_has_stopped(cfg, params, greedy_out):
    """decode.generate_with_steps' step count: the loop runs until its last live row emits eos, not to
    max_new_tokens, and the samples are those of the loop that ran to the end."""
    row = greedy_out.tokens[1]  # prompt 1's greedy continuation (EOS never came)
    eos = int(row[1])
    stop = int(np.flatnonzero(row == eos)[0]) + 1
    others = [i for i in (0, 2) if eos not in greedy_out.tokens[i]]
    assert stop < MAX_NEW and others, "pick another eos: one row must stop early and one run to the end"

    def packed(prompt_ids):
        """Three rows left-padded to the prompt bucket 16, plus a dummy row (starts stopped), as the Sampler packs."""
        tokens, positions = np.full((4, 16), PAD, np.int32), np.full((4, 16), -1, np.int32)
        for r, i in enumerate(prompt_ids):
            tokens[r, 16 - len(PROMPTS[i]):] = PROMPTS[i]
            positions[r, 16 - len(PROMPTS[i]):] = np.arange(len(PROMPTS[i]))
        positions[3, -1] = 0
        return tokens, positions, np.array(prompt_ids + [0], np.int32), np.array([True] * 3 + [False])

    run = jax.jit(functools.partial(decode.generate_with_steps, cfg=cfg, strategy=Greedy(), max_new_tokens=MAX_NEW,
                                    num_samples=1, eos_id=eos, pad_id=PAD))
    early, early_steps = run(params, *packed([1, 1, 1]), jax.random.key(0))
    full, full_steps = run(params, *packed([1, 1, others[0]]), jax.random.key(0))
    assert int(early_steps) == stop and int(full_steps) == MAX_NEW
    np.testing.assert_array_equal(early["lengths"][:3], [stop] * 3)
    for name in ("tokens", "logprobs", "model_logprobs", "lengths"):
        np.testing.assert_array_equal(early[name][:2], full[name][:2], err_msg=name)
    np.testing.assert_array_equal(early["tokens"][0, :stop], row[:stop])


def test_each_prompt_alone_matches_the_batch_of_mixed_lengths(cfg, params, greedy_out):
    # Largest batch bucket 1: every prompt runs in its own batch (its own generate call),
    # with its two samples as rows i*2 and i*2+1.
    alone = Sampler(cfg, eos_id=EOS, pad_id=PAD, batch_buckets=(1,))
    out = alone(params, PROMPTS, max_new_tokens=MAX_NEW, strategy=Greedy(), num_samples=2)
    np.testing.assert_array_equal(out.prompt_index, [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(out.tokens, np.repeat(greedy_out.tokens, 2, axis=0))
    np.testing.assert_array_equal(out.lengths, np.repeat(greedy_out.lengths, 2))
    np.testing.assert_allclose(out.model_logprobs, np.repeat(greedy_out.model_logprobs, 2, axis=0), atol=1e-5)
    assert alone.num_compilations == 1  # three prompt lengths, one prompt bucket


def test_new_prompt_length_in_same_bucket_does_not_recompile(params, sampler, greedy_out):
    run = lambda prompts: sampler(params, prompts, max_new_tokens=MAX_NEW, strategy=Greedy())
    compiled = sampler.num_compilations  # greedy_out compiled prompt bucket 16, batch bucket 4
    run([[3, 4, 5, 6, 7, 8, 9], [10], [11, 12, 13, 14]])  # other lengths and contents, same buckets
    run([[3] * 16, [4, 5, 6], [7], [8, 9]])  # 4 prompts: still batch bucket 4
    assert sampler.num_compilations == compiled
    run([[3] * 17])  # prompt bucket 32 (batch bucket 1): the counter must see it
    assert sampler.num_compilations == compiled + 1


def test_rejects_prompts_it_cannot_sample(sampler, params):
    with pytest.raises(ValueError, match="prompt 1 is empty"):
        sampler(params, [[3], []], max_new_tokens=2, strategy=Greedy())
    with pytest.raises(ValueError, match="largest prompt bucket"):
        sampler(params, [[3] * 2000], max_new_tokens=2, strategy=Greedy())
    with pytest.raises(ValueError, match="vocab_size"):
        sampler(params, [[3, VOCAB]], max_new_tokens=2, strategy=Greedy())


MESH_SCRIPT = textwrap.dedent("""
    import json, pickle, sys
    import jax, numpy as np
    from rr.models import model_config, param_logical_axes
    from rr.sampler import Greedy, Sampler
    from rr.sharding import logical_to_shardings, make_mesh
    params_path, prompts, max_new = json.loads(sys.argv[1])
    cfg = model_config("nano", vocab_size=%d)
    with open(params_path, "rb") as f:
        params = pickle.load(f)
    results = []
    # data=2: batch sharded; largest batch bucket 2, so the 3 prompts run as a batch of 2
    # and a batch of 1 padded to 2. tensor=2: params sharded as the trainer shards them.
    for shape in [(2, 1, 1), (1, 1, 2)]:
        mesh = make_mesh(*shape)
        shardings = logical_to_shardings(param_logical_axes(cfg), mesh)
        sampler = Sampler(cfg, eos_id=%d, pad_id=%d, mesh=mesh, batch_buckets=(1, 2))
        out = sampler(jax.device_put(params, shardings), prompts, max_new_tokens=max_new, strategy=Greedy())
        results.append([out.tokens.tolist(), out.model_logprobs.tolist()])
    print(json.dumps(results))
""" % (VOCAB, EOS, PAD))


def test_mesh_sharded_batch_matches_single_device(params, greedy_out, tmp_path):
    """Two forced host devices (a fresh process: the device count is fixed at jax start-up),
    as a data-parallel mesh and as a tensor-parallel one with tensor-sharded params."""
    params_path = str(tmp_path / "params.pkl")
    with open(params_path, "wb") as f:
        pickle.dump(jax.device_get(params), f)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu",
               PYTHONPATH=os.pathsep.join(filter(None, [REPO_ROOT, os.environ.get("PYTHONPATH")])))
    result = subprocess.run([sys.executable, "-c", MESH_SCRIPT, json.dumps([params_path, PROMPTS, MAX_NEW])], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    for tokens, model_logprobs in json.loads(result.stdout.strip().splitlines()[-1]):
        np.testing.assert_array_equal(tokens, greedy_out.tokens)
        np.testing.assert_allclose(model_logprobs, greedy_out.model_logprobs, atol=1e-5)
