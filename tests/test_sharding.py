"""Tests of rr.sharding: mesh construction, logical-axis rules, sharded forward = unsharded."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from rr.models import forward, init_params, model_config, param_logical_axes
from rr.sharding import LOGICAL_RULES, batch_sharding, logical_to_shardings, make_mesh, replicated

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The contract's mapping, written out independently of LOGICAL_RULES.
EXPECTED_MESH_AXIS = {"batch": "data", "vocab": "model", "mlp": "model", "heads": "model",
                      "kv_heads": "model", "embed": None, "head_dim": None, "norm": None}


def test_make_mesh_uses_all_devices_by_default():
    mesh = make_mesh()
    assert mesh.axis_names == ("data", "model")
    assert dict(mesh.shape) == {"data": jax.device_count(), "model": 1}


@pytest.mark.parametrize("data, model, message", [
    (jax.device_count() + 1, 1, "available"),
    (-1, jax.device_count() + 1, "does not divide"),
    (1, 0, "model must be"),
    (-2, 1, "data"),
])
def test_make_mesh_rejects_bad_shapes(data, model, message):
    with pytest.raises(ValueError, match=message):
        make_mesh(data, model)


def test_logical_rules_follow_the_contract():
    assert dict(LOGICAL_RULES) == EXPECTED_MESH_AXIS


def test_logical_to_shardings_maps_every_name_by_the_rules():
    cfg = model_config("nano", 64, qkv_bias=True, qk_norm=True, tie_embeddings=False)
    mesh = make_mesh()
    axes = param_logical_axes(cfg)
    shardings = logical_to_shardings(axes, mesh)
    is_spec = lambda x: isinstance(x, PartitionSpec)
    assert jax.tree.structure(shardings) == jax.tree.structure(axes, is_leaf=is_spec)
    for logical, sharding in zip(jax.tree.leaves(axes, is_leaf=is_spec), jax.tree.leaves(shardings)):
        assert isinstance(sharding, NamedSharding) and sharding.mesh == mesh
        assert tuple(sharding.spec) == tuple(EXPECTED_MESH_AXIS[name] for name in logical)
    assert shardings["layers_0"]["attn"]["q"]["kernel"].spec == PartitionSpec(None, "model", None)
    assert shardings["lm_head"]["kernel"].spec == PartitionSpec(None, "model")


def test_logical_to_shardings_never_uses_a_mesh_axis_twice_and_names_unknown_axes():
    mesh = make_mesh()
    got = logical_to_shardings({"w": PartitionSpec("heads", "mlp")}, mesh)
    assert got["w"].spec == PartitionSpec("model", None)
    custom = logical_to_shardings({"w": PartitionSpec("embed", "mlp")}, mesh,
                                  rules=(("embed", "model"), ("mlp", None)))
    assert custom["w"].spec == PartitionSpec("model", None)
    with pytest.raises(ValueError, match="experts"):
        logical_to_shardings({"w": PartitionSpec("experts")}, mesh)


def test_batch_and_replicated_shardings():
    mesh = make_mesh()
    assert batch_sharding(mesh).spec == PartitionSpec("data")
    assert replicated(mesh).spec == PartitionSpec()


def test_placed_params_give_the_same_forward():
    cfg = model_config("nano", 64, qkv_bias=True)
    mesh = make_mesh()
    params = init_params(cfg, jax.random.key(0))
    shardings = logical_to_shardings(param_logical_axes(cfg), mesh)
    placed = jax.device_put(params, shardings)
    tokens = jax.random.randint(jax.random.key(1), (2, 5), 0, 64)
    run = jax.jit(forward, static_argnums=0)
    expected = run(cfg, params, tokens)
    got = run(cfg, placed, jax.device_put(tokens, batch_sharding(mesh)))
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), atol=1e-6, rtol=1e-6)


MULTI_DEVICE_SCRIPT = textwrap.dedent("""
    import json
    import jax, jax.numpy as jnp, numpy as np
    from rr.models import (Decoder, cache_logical_axes, forward, init_cache, init_params, model_config,
                           param_logical_axes)
    from rr.sharding import batch_sharding, logical_to_shardings, make_mesh

    assert jax.device_count() == 8, jax.devices()
    cfg = model_config("nano", 64, qkv_bias=True)
    mesh = make_mesh(data=4, model=2)
    shardings = logical_to_shardings(param_logical_axes(cfg), mesh)
    sharded = init_params(cfg, jax.random.key(0), out_shardings=shardings)  # created sharded
    assert all(a.sharding == s for a, s in zip(jax.tree.leaves(sharded), jax.tree.leaves(shardings)))
    params = jax.device_put(sharded, jax.devices()[0])  # the same values on one device
    tokens = jax.random.randint(jax.random.key(1), (8, 6), 0, 64)
    run = jax.jit(forward, static_argnums=0)
    expected = np.asarray(run(cfg, params, tokens))

    sharded_tokens = jax.device_put(tokens, batch_sharding(mesh))
    got = np.asarray(run(cfg, sharded, sharded_tokens))

    # Prefill into a cache sharded by batch and kv heads.
    cache = jax.device_put(init_cache(cfg, 8, 8), logical_to_shardings(cache_logical_axes(cfg), mesh))
    positions = jax.device_put(jnp.broadcast_to(jnp.arange(6), (8, 6)), batch_sharding(mesh))
    cached, cache = jax.jit(Decoder(cfg).apply)({"params": sharded}, sharded_tokens, positions, cache)
    q_kernel = sharded["layers_0"]["attn"]["q"]["kernel"]
    print(json.dumps({
        "max_abs_diff": float(np.abs(got - expected).max()),
        "cache_max_abs_diff": float(np.abs(np.asarray(cached) - expected).max()),
        "mesh": dict(mesh.shape),
        "q_kernel_shard_shape": list(q_kernel.addressable_shards[0].data.shape),
        "tokens_shard_shape": list(sharded_tokens.addressable_shards[0].data.shape),
        "cache_k_shard_shape": list(cache["k"][0].addressable_shards[0].data.shape),
    }))
""")


def test_data4_model2_mesh_matches_single_device_forward():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu",
               PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", MULTI_DEVICE_SCRIPT], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    print("8-device forward:", report)
    assert report["mesh"] == {"data": 4, "model": 2}
    assert report["max_abs_diff"] < 1e-5 and report["cache_max_abs_diff"] < 1e-5
    cfg = model_config("nano", 64)
    hidden, heads, head_dim = cfg.hidden_size, cfg.num_heads, cfg.resolved_head_dim
    assert report["q_kernel_shard_shape"] == [hidden, heads // 2, head_dim]  # heads split over model=2
    assert report["tokens_shard_shape"] == [8 // 4, 6]  # batch split over data=4
    assert report["cache_k_shard_shape"] == [8 // 4, 8, cfg.num_kv_heads // 2, head_dim]
