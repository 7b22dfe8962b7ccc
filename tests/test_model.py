"""Tests of rr.models: every expectation is computed independently in the test."""

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax.sharding import PartitionSpec

from rr.models import (PRESETS, Decoder, ModelConfig, forward, init_cache, init_params, model_config,
                       param_logical_axes)
from rr.models.hf_io import params_from_tensors
from rr.models.layers import Attention
from rr.models.rope import inverse_frequencies, rope_tables

VOCAB = 61
LOGICAL_NAMES = {"vocab", "embed", "mlp", "heads", "kv_heads", "head_dim", "norm"}


def random_params(cfg, seed=0):
    """Params of the model's exact tree and shapes, drawn with numpy (init_params is tested
    on its own; compiling flax init for every config would dominate the test time). Norm
    scales and biases are made non-trivial so that they matter."""
    abstract = jax.eval_shape(lambda k: init_params(cfg, k), jax.random.key(0))
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        name = jax.tree_util.keystr(path)
        noise = rng.normal(size=leaf.shape)
        value = 1.0 + 0.1 * noise if "scale" in name else 0.15 * noise
        return jnp.asarray(value, leaf.dtype)

    return jax.tree_util.tree_map_with_path(draw, abstract)


@functools.lru_cache(maxsize=None)
def apply_fn(cfg):
    return jax.jit(Decoder(cfg).apply)


def arange_positions(batch, length):
    return jnp.broadcast_to(jnp.arange(length, dtype=jnp.int32), (batch, length))


CFG_BIAS = model_config("nano", VOCAB, qkv_bias=True)
CFG_QKNORM_UNTIED = model_config("nano", VOCAB, qk_norm=True, tie_embeddings=False)


# --- config -----------------------------------------------------------------------------------

def test_model_config_rejects_unknown_preset_and_field():
    with pytest.raises(ValueError, match="nano"):
        model_config("no-such-preset", VOCAB)
    with pytest.raises(ValueError, match="hiden_size"):
        model_config("nano", VOCAB, hiden_size=8)
    with pytest.raises(ValueError, match="num_kv_heads"):
        model_config("nano", VOCAB, num_kv_heads=3)
    with pytest.raises(ValueError, match="rope_type"):
        model_config("nano", VOCAB, rope_type="yarn")
    with pytest.raises(ValueError, match="llama3 rope scaling needs"):  # the blend would divide by zero
        model_config("nano", VOCAB, rope_type="llama3", rope_low_freq_factor=4.0, rope_high_freq_factor=4.0)


def test_model_config_overrides_apply():
    cfg = model_config("tiny", 100, qk_norm=True, dtype="bfloat16")
    assert (cfg.vocab_size, cfg.hidden_size, cfg.qk_norm, cfg.dtype) == (100, 128, True, "bfloat16")
    assert cfg.resolved_head_dim == 128 // 4


# --- causality and masking ----------------------------------------------------------------------
# Every model test uses batch 3 x 9 tokens so that each config compiles once per call shape.
B, T = 3, 9


def logits_of(cfg, params, tokens, positions):
    return apply_fn(cfg)({"params": params}, tokens, positions)[0]


def left_pad(rows, pad_id=0):
    """Left-pads token rows to T; pads get position -1, real tokens 0..n-1."""
    tokens = np.full((len(rows), T), pad_id, np.int32)
    positions = np.full((len(rows), T), -1, np.int32)
    for i, r in enumerate(rows):
        tokens[i, T - len(r):] = r
        positions[i, T - len(r):] = np.arange(len(r))
    return jnp.asarray(tokens), jnp.asarray(positions)


def test_forward_uses_positions_0_to_T_minus_1():
    params = random_params(CFG_BIAS)
    tokens = jax.random.randint(jax.random.key(2), (B, T), 0, VOCAB)
    positions = jnp.broadcast_to(jnp.arange(T, dtype=jnp.int32), (B, T))
    np.testing.assert_array_equal(np.asarray(jax.jit(forward, static_argnums=0)(CFG_BIAS, params, tokens)),
                                  np.asarray(logits_of(CFG_BIAS, params, tokens, positions)))


@pytest.mark.parametrize("cfg", [CFG_BIAS, CFG_QKNORM_UNTIED], ids=["bias", "qknorm_untied"])
def test_changing_a_later_token_never_changes_earlier_logits(cfg):
    params = random_params(cfg)
    tokens = jax.random.randint(jax.random.key(3), (B, T), 0, VOCAB)
    positions = arange_positions(B, T)
    base = logits_of(cfg, params, tokens, positions)
    for j in (0, 4, 8):
        changed = tokens.at[:, j].set((tokens[:, j] + 1) % VOCAB)
        logits = logits_of(cfg, params, changed, positions)
        np.testing.assert_array_equal(np.asarray(logits[:, :j]), np.asarray(base[:, :j]))
        # ...and the change is visible from position j on (the check is not vacuous).
        assert np.abs(np.asarray(logits[:, j:] - base[:, j:])).max(axis=-1).min() > 1e-4


def test_left_padded_row_matches_unpadded_row():
    cfg = CFG_BIAS
    params = random_params(cfg)
    rng = np.random.default_rng(0)
    rows = [rng.integers(1, VOCAB, n) for n in (9, 3, 5)]
    tokens, positions = left_pad(rows)
    logits = logits_of(cfg, params, tokens, positions)
    assert np.isfinite(np.asarray(logits)).all()  # pad queries see no key: still no NaN
    # Reference: each row alone at the start (positions 0..T-1, junk after it, which by
    # causality cannot reach the row's own logits).
    unpadded = np.full((B, T), 7, np.int32)
    for i, r in enumerate(rows):
        unpadded[i, :len(r)] = r
    alone = logits_of(cfg, params, jnp.asarray(unpadded), arange_positions(B, T))
    for i, r in enumerate(rows):
        np.testing.assert_allclose(np.asarray(logits[i, T - len(r):]), np.asarray(alone[i, :len(r)]),
                                   atol=1e-5, rtol=1e-5)
    # Without the position mask the pads would be visible and change the logits.
    shifted = logits_of(cfg, params, tokens, arange_positions(B, T))
    assert np.abs(np.asarray(shifted[1, T - 3:] - alone[1, :3])).max() > 1e-3


def test_right_padding_leaves_real_tokens_alone_and_fully_padded_row_is_finite():
    cfg = CFG_BIAS
    params = random_params(cfg)
    tokens = jax.random.randint(jax.random.key(4), (B, T), 0, VOCAB)
    positions = np.asarray(arange_positions(B, T)).copy()
    positions[0, 4:] = -1
    positions[2, :] = -1
    logits = logits_of(cfg, params, tokens, jnp.asarray(positions))
    assert np.isfinite(np.asarray(logits)).all()
    reference = logits_of(cfg, params, tokens, arange_positions(B, T))
    np.testing.assert_allclose(np.asarray(logits[:2, :4]), np.asarray(reference[:2, :4]),
                               atol=1e-5, rtol=1e-5)


# --- KV cache -----------------------------------------------------------------------------------

def decode_with_cache(cfg, params, tokens, positions, prefill_len, cache_len):
    """Prefill the first prefill_len columns, then feed one column at a time."""
    apply = apply_fn(cfg)
    cache = init_cache(cfg, tokens.shape[0], cache_len, dtype=cfg.dtype)
    logits, cache = apply({"params": params}, tokens[:, :prefill_len], positions[:, :prefill_len], cache)
    chunks = [logits]
    for t in range(prefill_len, tokens.shape[1]):
        logits, cache = apply({"params": params}, tokens[:, t:t + 1], positions[:, t:t + 1], cache)
        chunks.append(logits)
    return jnp.concatenate(chunks, axis=1), cache


@pytest.mark.parametrize("cfg", [CFG_BIAS, CFG_QKNORM_UNTIED], ids=["bias", "qknorm_untied"])
@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "left_padded"])
def test_cached_decoding_equals_full_forward(cfg, padded):
    params = random_params(cfg)
    rng = np.random.default_rng(1)
    lengths = (9, 6, 4) if padded else (9, 9, 9)
    tokens, positions = left_pad([rng.integers(1, VOCAB, n) for n in lengths])
    full = logits_of(cfg, params, tokens, positions)
    cache_len = 12  # longer than the sequence: empty slots must stay invisible
    stepped, cache = decode_with_cache(cfg, params, tokens, positions, prefill_len=5, cache_len=cache_len)
    real = np.asarray(positions) >= 0
    np.testing.assert_allclose(np.asarray(stepped)[real], np.asarray(full)[real], atol=1e-5, rtol=1e-5)
    assert int(cache["end"]) == T
    expected_pos = np.full((B, cache_len), -1)
    expected_pos[:, :T] = np.asarray(positions)
    np.testing.assert_array_equal(np.asarray(cache["pos"]), expected_pos)


def test_init_cache_layout():
    cfg = model_config("nano", VOCAB, num_layers=3)
    cache = init_cache(cfg, 2, 5)
    assert len(cache["k"]) == len(cache["v"]) == 3
    assert cache["k"][0].shape == (2, 5, cfg.num_kv_heads, cfg.resolved_head_dim)
    assert cache["k"][0].dtype == jnp.float32
    assert init_cache(cfg, 2, 5, dtype="bfloat16")["v"][2].dtype == jnp.bfloat16
    assert (np.asarray(cache["pos"]) == -1).all() and int(cache["end"]) == 0


# --- one attention layer against numpy ----------------------------------------------------------

def numpy_rms_norm(x, scale, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * scale


def numpy_rope(x_TxH, positions_T, theta):
    """Hugging Face rotate_half convention, written out per position and frequency."""
    T, H = x_TxH.shape
    out = np.empty_like(x_TxH)
    for t in range(T):
        for i in range(H // 2):
            angle = positions_T[t] / theta ** (2 * i / H)
            a, b = x_TxH[t, i], x_TxH[t, i + H // 2]
            out[t, i] = a * math.cos(angle) - b * math.sin(angle)
            out[t, i + H // 2] = b * math.cos(angle) + a * math.sin(angle)
    return out


def numpy_gqa_attention(cfg, p, x_BxTxD, positions_BxT):
    """Naive grouped-query attention: one (batch, query head) at a time, float64."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), p)
    B, T, D = x_BxTxD.shape
    N, KV, H = cfg.num_heads, cfg.num_kv_heads, cfg.resolved_head_dim
    out = np.zeros((B, T, D))
    for b in range(B):
        x = x_BxTxD[b]
        pos = positions_BxT[b]
        for h in range(N):
            kvh = h // (N // KV)
            q = x @ p["q"]["kernel"][:, h, :] + (p["q"]["bias"][h] if cfg.qkv_bias else 0)
            k = x @ p["k"]["kernel"][:, kvh, :] + (p["k"]["bias"][kvh] if cfg.qkv_bias else 0)
            v = x @ p["v"]["kernel"][:, kvh, :] + (p["v"]["bias"][kvh] if cfg.qkv_bias else 0)
            if cfg.qk_norm:
                q = numpy_rms_norm(q, p["q_norm"]["scale"], cfg.rms_norm_eps)
                k = numpy_rms_norm(k, p["k_norm"]["scale"], cfg.rms_norm_eps)
            q, k = numpy_rope(q, pos, cfg.rope_theta), numpy_rope(k, pos, cfg.rope_theta)
            for t in range(T):
                visible = [s for s in range(T) if 0 <= pos[s] <= pos[t]]
                if not visible:
                    continue  # padding query: its output is never used
                scores = np.array([q[t] @ k[s] / math.sqrt(H) for s in visible])
                weights = np.exp(scores - scores.max())
                weights /= weights.sum()
                head_out = sum(w * v[s] for w, s in zip(weights, visible))
                out[b, t] += head_out @ p["o"]["kernel"][h]
    return out


@pytest.mark.parametrize("extras", [dict(qkv_bias=True), dict(qk_norm=True, rope_theta=500.0)],
                         ids=["qkv_bias", "qk_norm"])
def test_attention_layer_matches_numpy_gqa_with_rope(extras):
    cfg = ModelConfig(vocab_size=VOCAB, hidden_size=24, intermediate_size=16, num_layers=1,
                      num_heads=6, num_kv_heads=2, head_dim=8, **extras)
    batch, length = 2, 5
    x = jax.random.normal(jax.random.key(0), (batch, length, cfg.hidden_size))
    positions = jnp.array([[0, 1, 2, 3, 4], [-1, 0, 1, 2, 3]], jnp.int32)
    positions_np = np.asarray(positions)
    attn = Attention(cfg)
    sin, cos = rope_tables(positions.reshape(batch * length), inverse_frequencies(cfg))
    mask = (positions[:, None, :] >= 0) & (positions[:, None, :] <= positions[:, :, None])
    x_MxD = x.reshape(batch * length, cfg.hidden_size)
    abstract = jax.eval_shape(attn.init, jax.random.key(1), x_MxD, sin, cos, mask)["params"]
    rng = np.random.default_rng(2)
    params = jax.tree.map(lambda a: jnp.asarray(0.3 * rng.normal(size=a.shape), jnp.float32),
                          nn.unbox(abstract))
    out, _ = jax.jit(attn.apply)({"params": params}, x_MxD, sin, cos, mask)
    out = out.reshape(batch, length, cfg.hidden_size)
    expected = numpy_gqa_attention(cfg, params, np.asarray(x, np.float64), positions_np)
    real = positions_np >= 0
    np.testing.assert_allclose(np.asarray(out)[real], expected[real], atol=1e-5, rtol=1e-4)


# --- embeddings, dtypes -------------------------------------------------------------------------

def test_one_hot_embedding_equals_gather():
    cfg = CFG_QKNORM_UNTIED
    params = random_params(cfg)
    tokens = jax.random.randint(jax.random.key(5), (B, T), 0, VOCAB)
    gathered = logits_of(cfg, params, tokens, arange_positions(B, T))
    one_hot_cfg = model_config("nano", VOCAB, qk_norm=True, tie_embeddings=False, embed_one_hot=True)
    one_hot = logits_of(one_hot_cfg, params, tokens, arange_positions(B, T))
    np.testing.assert_allclose(np.asarray(one_hot), np.asarray(gathered), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("param_dtype", ["float32", "bfloat16"])
def test_bfloat16_compute_gives_float32_logits_close_to_float32(param_dtype):
    cfg16 = model_config("nano", VOCAB, qkv_bias=True, dtype="bfloat16", param_dtype=param_dtype)
    abstract = jax.eval_shape(lambda k: init_params(cfg16, k), jax.random.key(0))
    assert {a.dtype for a in jax.tree.leaves(abstract)} == {jnp.dtype(param_dtype)}
    params = random_params(CFG_BIAS)
    params16 = jax.tree.map(lambda a: a.astype(param_dtype), params)
    tokens = jax.random.randint(jax.random.key(6), (B, T), 0, VOCAB)
    logits16 = logits_of(cfg16, params16, tokens, arange_positions(B, T))
    logits32 = logits_of(CFG_BIAS, params, tokens, arange_positions(B, T))
    assert logits16.dtype == jnp.float32
    scale = np.abs(np.asarray(logits32)).max()
    assert np.abs(np.asarray(logits16 - logits32)).max() < 0.05 * scale
    if param_dtype == "bfloat16":  # bf16 cache: decoding stays close too
        stepped, cache = decode_with_cache(cfg16, params16, tokens, arange_positions(B, T), 5, T)
        assert cache["k"][0].dtype == jnp.bfloat16
        assert np.abs(np.asarray(stepped - logits32)).max() < 0.05 * scale


# --- shapes, parameter counts, logical axes ------------------------------------------------------

def expected_param_count(cfg):
    D, F, N, KV, H = (cfg.hidden_size, cfg.intermediate_size, cfg.num_heads, cfg.num_kv_heads,
                      cfg.resolved_head_dim)
    attn = D * N * H + 2 * D * KV * H + N * H * D
    attn += (N * H + 2 * KV * H) if cfg.qkv_bias else 0
    attn += 2 * H if cfg.qk_norm else 0
    layer = attn + 3 * D * F + 2 * D
    head = 0 if cfg.tie_embeddings else D * cfg.vocab_size
    return cfg.vocab_size * D + cfg.num_layers * layer + D + head


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_preset_shapes_and_param_counts(preset):
    # jax.eval_shape: shapes only, so even the 0.6B presets cost a trace, not memory.
    deep = PRESETS[preset]["num_layers"] > 8  # tracing 24+ layers again and again is slow
    for tied in (True,) if deep else (True, False):
        cfg = model_config(preset, 1000, tie_embeddings=tied)
        abstract = jax.eval_shape(lambda k: init_params(cfg, k), jax.random.key(0))
        count = sum(math.prod(a.shape) for a in jax.tree.leaves(abstract))
        assert count == expected_param_count(cfg)
        assert ("lm_head" in abstract) != tied
    if deep:
        return
    tokens = jax.ShapeDtypeStruct((2, 3), jnp.int32)
    logits, cache = jax.eval_shape(Decoder(cfg).apply, {"params": abstract}, tokens, tokens)
    assert logits.shape == (2, 3, 1000) and logits.dtype == jnp.float32 and cache is None
    cache = jax.eval_shape(lambda: init_cache(cfg, 2, 8))
    logits, cache = jax.eval_shape(Decoder(cfg).apply, {"params": abstract}, tokens, tokens, cache)
    assert logits.shape == (2, 3, 1000) and len(cache["k"]) == cfg.num_layers
    assert cache["k"][0].shape == (2, 8, cfg.num_kv_heads, cfg.resolved_head_dim)


def test_bench_shapes_match_readme_param_counts():
    # ../shared/bench/README.md: tiny 3.1M (vocab 512), small 25.7M (vocab 4096), tied.
    # Worked by hand for qwen2-tiny: per layer q 256*256+256, k and v 256*128+128 each, o 256*256,
    # mlp 3*256*704, 2 norms of 256 -> 738,304; x4 + embedding 512*256 + final norm 256.
    tiny = model_config("qwen2-tiny", 512)
    abstract = jax.eval_shape(lambda k: init_params(tiny, k), jax.random.key(0))
    count = sum(math.prod(a.shape) for a in jax.tree.leaves(abstract))
    assert count == 4 * 738_304 + 512 * 256 + 256 == 3_084_544
    assert round(count / 1e6, 1) == 3.1
    small = model_config("qwen2-small", 4096)
    assert round(expected_param_count(small) / 1e6, 1) == 25.7


def test_param_logical_axes_match_params():
    for cfg, real_init in ((CFG_QKNORM_UNTIED, True), (CFG_BIAS, False)):
        if real_init:
            params = init_params(cfg, jax.random.key(0))
        else:  # same tree and shapes, without compiling another init
            params = jax.eval_shape(lambda k: init_params(cfg, k), jax.random.key(0))
        axes = param_logical_axes(cfg)
        is_spec = lambda x: isinstance(x, PartitionSpec)
        assert jax.tree.structure(axes, is_leaf=is_spec) == jax.tree.structure(params)
        pairs = zip(jax.tree.leaves(axes, is_leaf=is_spec), jax.tree.leaves(params))
        for spec, param in pairs:
            assert isinstance(spec, PartitionSpec) and len(spec) == param.ndim
            assert set(spec) <= LOGICAL_NAMES
        assert axes["embed"]["embedding"] == PartitionSpec("vocab", "embed")
        assert axes["layers_1"]["attn"]["k"]["kernel"] == PartitionSpec("embed", "kv_heads", "head_dim")
        assert axes["layers_0"]["mlp"]["down"]["kernel"] == PartitionSpec("mlp", "embed")


def test_init_params_statistics():
    """Real init: unit norm scales, zero biases, embedding std 0.02, kernels ~ 1/sqrt(fan_in)."""
    cfg = model_config("nano", VOCAB, qkv_bias=True, qk_norm=True, tie_embeddings=False)
    params = init_params(cfg, jax.random.key(0))
    again = init_params(cfg, jax.random.key(0))
    other = init_params(cfg, jax.random.key(1))
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(again)))
    assert not np.array_equal(params["embed"]["embedding"], other["embed"]["embedding"])
    layer = params["layers_0"]
    assert (np.asarray(layer["input_norm"]["scale"]) == 1).all()
    assert (np.asarray(layer["attn"]["q_norm"]["scale"]) == 1).all()
    assert (np.asarray(layer["attn"]["k"]["bias"]) == 0).all()
    assert abs(float(np.std(params["embed"]["embedding"])) - 0.02) < 0.004
    D, F = cfg.hidden_size, cfg.intermediate_size
    N, H = cfg.num_heads, cfg.resolved_head_dim
    # truncated normal with variance 1/fan_in
    for kernel, fan_in in ((layer["attn"]["q"]["kernel"], D), (layer["attn"]["o"]["kernel"], N * H),
                           (layer["mlp"]["down"]["kernel"], F), (params["lm_head"]["kernel"], D)):
        std = float(np.std(kernel)) * math.sqrt(fan_in)
        assert 0.8 < std < 1.2, std


def test_param_names_follow_hugging_face_layout():
    params = jax.eval_shape(lambda k: init_params(CFG_QKNORM_UNTIED, k), jax.random.key(0))
    layer = params["layers_1"]
    assert set(params) == {"embed", "layers_0", "layers_1", "final_norm", "lm_head"}
    assert set(layer) == {"input_norm", "attn", "post_attn_norm", "mlp"}
    assert set(layer["attn"]) == {"q", "k", "v", "o", "q_norm", "k_norm"}
    assert set(layer["mlp"]) == {"gate", "up", "down"}


def test_real_checkpoint_shapes_match_published_param_counts():
    # Qwen2-0.5B: 494,032,768 parameters (Hugging Face model card / safetensors index);
    # Qwen3-0.6B: 0.44B non-embedding parameters (model card), vocabulary 151,936 for both.
    qwen2 = model_config("qwen2-0.5b", 151_936)
    abstract = jax.eval_shape(lambda k: init_params(qwen2, k), jax.random.key(0))
    assert sum(math.prod(a.shape) for a in jax.tree.leaves(abstract)) == 494_032_768
    qwen3 = model_config("qwen3-0.6b", 151_936)
    non_embedding = expected_param_count(qwen3) - 151_936 * qwen3.hidden_size
    assert round(non_embedding / 1e9, 2) == 0.44


# --- logit parity with Hugging Face (only where torch is installed) -------------------------------

def hf_to_rr_params(hf_model, cfg):
    """A Hugging Face model's weights on rr's tree, through the same mapping as rr.models.from_hf."""
    tensors = {k: v.detach().numpy().astype(np.float32) for k, v in hf_model.state_dict().items()}
    return jax.tree.map(jnp.asarray, params_from_tensors(tensors, cfg))


@pytest.mark.parametrize("family", ["qwen2", "qwen3"])
def test_logits_match_hugging_face(family):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    common = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, rope_theta=1000.0, rms_norm_eps=1e-6,
                  max_position_embeddings=64)
    if family == "qwen2":  # qkv bias, tied embeddings
        hf = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**common, tie_word_embeddings=True))
        cfg = ModelConfig(VOCAB, 32, 48, 2, 4, 2, rope_theta=1000.0, qkv_bias=True)
    else:  # qk-norm, head_dim != hidden / heads, untied
        hf = transformers.Qwen3ForCausalLM(transformers.Qwen3Config(
            **common, head_dim=12, tie_word_embeddings=False, attention_bias=False))
        cfg = ModelConfig(VOCAB, 32, 48, 2, 4, 2, head_dim=12, rope_theta=1000.0, qk_norm=True,
                          tie_embeddings=False)
    hf.eval()
    with torch.no_grad():  # make biases and norm scales non-trivial
        for p in hf.parameters():
            p.add_(0.05 * torch.randn_like(p))
    ids = torch.randint(0, VOCAB, (2, T))
    with torch.no_grad():
        expected = hf(ids).logits.numpy()
    tokens = jnp.asarray(ids.numpy(), jnp.int32)
    got = logits_of(cfg, hf_to_rr_params(hf, cfg), tokens, arange_positions(2, T))
    np.testing.assert_allclose(np.asarray(got), expected, atol=1e-5, rtol=1e-5)
