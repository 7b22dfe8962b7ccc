"""Tests of rr.sharding: mesh construction, logical-axis rules from the config, decode rules, sharded forward =
unsharded."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from rr import sharding
from rr.config import ConfigError, base_config, validate
from rr.models import forward, init_params, model_config, param_logical_axes
from rr.sharding import batch_sharding, logical_to_shardings, make_mesh, replicated

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The contract's mapping (config.mesh.rules' defaults), written out independently of the config.
EXPECTED_MESH_AXES = {"batch": ("data", "fsdp"), "embed": ("fsdp",), "vocab": ("tensor",), "mlp": ("tensor",),
                      "heads": ("tensor",), "kv_heads": ("tensor",), "head_dim": (), "norm": (), "lora": ()}


def spec_entry(axes: tuple[str, ...]):
  return None if not axes else axes[0] if len(axes) == 1 else axes


def test_make_mesh_uses_all_devices_by_default():
  mesh = make_mesh()
  assert mesh.axis_names == ("data", "fsdp", "tensor")
  assert dict(mesh.shape) == {"data": jax.device_count(), "fsdp": 1, "tensor": 1}


@pytest.mark.parametrize("data, fsdp, tensor, message", [
    (jax.device_count() + 1, 1, 1, "available"),
    (-1, jax.device_count() + 1, 1, "does not divide"),
    (-1, 1, jax.device_count() + 1, "does not divide"),
    (1, 0, 1, "fsdp and tensor must be"),
    (1, 1, 0, "fsdp and tensor must be"),
    (-2, 1, 1, "data"),
])
def test_make_mesh_rejects_bad_shapes(data, fsdp, tensor, message):
  with pytest.raises(ValueError, match=message):
    make_mesh(data, fsdp, tensor)


def test_default_rules_follow_the_contract_and_a_config_context_replaces_them():
  assert dict(sharding.active_rules()) == EXPECTED_MESH_AXES
  config = base_config()
  config.mesh.rules.batch, config.mesh.rules.embed, config.mesh.rules.mlp = "data", "", " fsdp , tensor"
  with sharding.rules_from_config(config):
    rules = dict(sharding.active_rules())
    assert (rules["batch"], rules["embed"], rules["mlp"]) == (("data",), (), ("fsdp", "tensor"))
    inner = base_config()
    inner.mesh.rules.vocab = ""
    with sharding.rules_from_config(inner):
      assert dict(sharding.active_rules()) == {**EXPECTED_MESH_AXES, "vocab": ()}
    assert dict(sharding.active_rules()) == rules
  assert dict(sharding.active_rules()) == EXPECTED_MESH_AXES


def test_decode_rules_take_fsdp_off_the_params_but_not_the_batch():
  config = base_config()
  config.mesh.rules.mlp = "fsdp,tensor"
  decode = dict(sharding.decode_rules(sharding.rules_of(config)))
  assert decode == {**EXPECTED_MESH_AXES, "embed": (), "mlp": ("tensor",)}


def test_logical_to_shardings_maps_every_name_by_the_rules():
  cfg = model_config("nano", 64, qkv_bias=True, qk_norm=True, tie_embeddings=False)
  mesh = make_mesh()
  axes = param_logical_axes(cfg)
  shardings = logical_to_shardings(axes, mesh)
  is_spec = lambda x: isinstance(x, PartitionSpec)
  assert jax.tree.structure(shardings) == jax.tree.structure(axes, is_leaf=is_spec)
  for logical, sharding_ in zip(jax.tree.leaves(axes, is_leaf=is_spec), jax.tree.leaves(shardings)):
    assert isinstance(sharding_, NamedSharding) and sharding_.mesh == mesh
    assert tuple(sharding_.spec) == tuple(spec_entry(EXPECTED_MESH_AXES[name]) for name in logical)
  assert shardings["layers_0"]["attn"]["q"]["kernel"].spec == PartitionSpec("fsdp", "tensor", None)
  assert shardings["layers_0"]["mlp"]["down"]["kernel"].spec == PartitionSpec("tensor", "fsdp")
  assert shardings["lm_head"]["kernel"].spec == PartitionSpec("fsdp", "tensor")


def test_logical_to_shardings_never_uses_a_mesh_axis_twice_and_names_unknown_axes():
  mesh = make_mesh()
  got = logical_to_shardings({"w": PartitionSpec("heads", "mlp"), "x": PartitionSpec("batch", "embed")}, mesh)
  assert got["w"].spec == PartitionSpec("tensor", None)
  assert got["x"].spec == PartitionSpec(("data", "fsdp"), None)  # fsdp splits the rows, so not the width too
  custom = logical_to_shardings({"w": PartitionSpec("embed", "mlp")}, mesh,
                                rules=(("embed", ("fsdp", "tensor")), ("mlp", ("tensor",))))
  assert custom["w"].spec == PartitionSpec(("fsdp", "tensor"), None)
  with pytest.raises(ValueError, match="experts"):
    logical_to_shardings({"w": PartitionSpec("experts")}, mesh)
  with pytest.raises(ValueError, match="lacks"):
    logical_to_shardings({"w": PartitionSpec("embed")}, Mesh(np.array(jax.devices()[:1]), ("data",)))


def test_batch_and_replicated_shardings_follow_the_batch_rule():
  mesh = make_mesh()
  assert batch_sharding(mesh).spec == PartitionSpec(("data", "fsdp"))
  assert sharding.batch_shards(mesh) == jax.device_count()
  config = base_config()
  config.mesh.rules.batch = "data"
  with sharding.rules_from_config(config):
    assert batch_sharding(mesh).spec == PartitionSpec("data")
  assert replicated(mesh).spec == PartitionSpec()


@pytest.mark.parametrize("key, value, message", [
    ("mesh.rules.embed", "fdsp", "config.mesh.rules.embed='fdsp'"),
    ("mesh.rules.batch", "data,data", "config.mesh.rules.batch='data,data'"),
    ("mesh.data", 0, "config.mesh.data=0"),
    ("mesh.fsdp", 0, "config.mesh.fsdp=0"),
    ("mesh.tensor", -1, "config.mesh.tensor=-1"),
])
def test_bad_mesh_config_is_one_error_naming_the_key(key, value, message):
  config = base_config()
  group, *inner, name = key.split(".")
  target = config[group]
  for part in inner:
    target = target[part]
  target[name] = value
  with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
    validate(config)


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
    mesh = make_mesh(data=2, fsdp=2, tensor=2)
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


def test_data2_fsdp2_tensor2_mesh_matches_single_device_forward():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu",
             PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
  proc = subprocess.run([sys.executable, "-c", MULTI_DEVICE_SCRIPT], env=env, cwd=REPO_ROOT,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  report = json.loads(proc.stdout.strip().splitlines()[-1])
  print("8-device forward:", report)
  assert report["mesh"] == {"data": 2, "fsdp": 2, "tensor": 2}
  assert report["max_abs_diff"] < 1e-5 and report["cache_max_abs_diff"] < 1e-5
  cfg = model_config("nano", 64)
  hidden, heads, head_dim = cfg.hidden_size, cfg.num_heads, cfg.resolved_head_dim
  assert report["q_kernel_shard_shape"] == [hidden // 2, heads // 2, head_dim]  # embed over fsdp, heads over tensor
  assert report["tokens_shard_shape"] == [8 // 4, 6]  # batch split over data x fsdp
  assert report["cache_k_shard_shape"] == [8 // 4, 8, cfg.num_kv_heads // 2, head_dim]
