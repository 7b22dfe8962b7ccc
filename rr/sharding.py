"""Device mesh and the rules that map logical axis names onto it.

Parameters name their axes logically ("vocab", "embed", "mlp", "heads", ...); the rules say which mesh axes, if
any, shard each name. The same step function then runs on 1 CPU, 8 forced CPU devices, a GPU or a TPU pod: only
the mesh and the rules change. Mesh axes are ("data", "fsdp", "tensor"):

  data    splits the batch only; every device of it holds whole params (data parallelism)
  fsdp    splits the batch and every param (ZeRO-3: params, gradients and optimiser moments sharded; XLA gathers
          a param where it is used and reduce-scatters its gradient)
  tensor  splits heads, kv heads, MLP and vocabulary (tensor parallelism)

The rules come from config.mesh.rules. They are in force inside `rules_from_config(config)` (the config defaults
outside any), so every place that builds shardings (train state, frozen models, batches, the sampler) uses the
same rules without the config threaded through each signature, as flax's nn.logical_axis_rules does. The context
is process-wide, not per thread, so a helper thread sees the rules its run set. Decoding uses `decode_rules`: the
params are gathered over fsdp once per rollout instead of at every generated token.
"""

from __future__ import annotations

import contextlib
import functools
import math

import jax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from rr.config import MESH_AXES, base_config, mesh_rule_axes

# (logical axis name, the mesh axes that split it), e.g. (("batch", ("data", "fsdp")), ("embed", ("fsdp",)), ...)
Rules = tuple[tuple[str, tuple[str, ...]], ...]

_active: list[Rules] = []  # the rules of the open rules_from_config contexts, innermost last


def make_mesh(data: int = -1, fsdp: int = 1, tensor: int = 1, devices=None) -> Mesh:
  """A ("data", "fsdp", "tensor") mesh over all devices; data=-1 takes the devices fsdp and tensor leave."""
  devices = list(jax.devices() if devices is None else devices)
  count = len(devices)
  if fsdp < 1 or tensor < 1 or data == 0 or data < -1:
    raise ValueError(f"make_mesh(data={data}, fsdp={fsdp}, tensor={tensor}): fsdp and tensor must be >= 1 and "
                     "data >= 1 or -1 (all remaining devices)")
  if data == -1:
    if count % (fsdp * tensor):
      raise ValueError(f"make_mesh: fsdp={fsdp} x tensor={tensor} = {fsdp * tensor} does not divide the {count} "
                       f"available devices; pick sizes whose product divides {count}")
    data = count // (fsdp * tensor)
  if data * fsdp * tensor != count:
    raise ValueError(f"make_mesh: data={data} x fsdp={fsdp} x tensor={tensor} = {data * fsdp * tensor} devices, "
                     f"but {count} are available; make the product {count} or pass data=-1")
  # jax.make_mesh orders devices by physical topology (TPU/GPU), the last axis fastest (tensor: the most
  # communication, on the nearest devices); Auto axes keep jit's sharding propagation (not sharding-in-types).
  return jax.make_mesh((data, fsdp, tensor), MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES),
                       devices=devices)


def rules_of(config) -> Rules:
  """The rules config.mesh.rules writes: one key per logical axis, "" or comma-separated mesh axes."""
  return tuple((name, mesh_rule_axes(value)) for name, value in config.mesh.rules.items())


@functools.cache
def default_rules() -> Rules:
  return rules_of(base_config())


def active_rules() -> Rules:
  """The innermost rules_from_config context's rules, else the config defaults."""
  return _active[-1] if _active else default_rules()


@contextlib.contextmanager
def rules_from_config(config):
  """Puts config.mesh.rules in force for every sharding built inside (nested contexts: the innermost wins)."""
  _active.append(rules_of(config))
  try:
    yield
  finally:
    _active.pop()


def decode_rules(rules: Rules) -> Rules:
  """The sampler's rules: `rules` with fsdp taken off every param axis, while the batch still splits over it.

  A token-by-token decode would otherwise gather every fsdp-sharded param at each generated token; gathering
  them once per generate call costs one param copy per fsdp group instead."""
  return tuple((name, axes if name == "batch" else tuple(a for a in axes if a != "fsdp")) for name, axes in rules)


def mesh_spec(logical_spec: PartitionSpec, rules: Rules) -> PartitionSpec:
  """Logical names -> mesh axes; a mesh axis already used earlier in the spec is not reused."""
  by_name = dict(rules)
  used, out = set(), []
  for name in logical_spec:
    if name is None:
      out.append(None)
      continue
    if name not in by_name:
      raise ValueError(f"logical axis {name!r} has no sharding rule; rules cover {sorted(by_name)}")
    axes = tuple(a for a in by_name[name] if a not in used)
    used.update(axes)
    out.append(None if not axes else axes[0] if len(axes) == 1 else axes)
  return PartitionSpec(*out)


def logical_to_shardings(logical_axes_tree, mesh: Mesh, rules: Rules | None = None):
  """Maps a pytree of logical PartitionSpecs to NamedShardings on `mesh` (rules: the active rules by default).

  Sharding a dimension requires its size to be divisible by its mesh axes' sizes (e.g. num_kv_heads by the
  tensor axis, hidden_size by fsdp); choose the mesh accordingly.
  """
  rules = active_rules() if rules is None else rules
  _check_mesh_has(mesh, rules)
  return jax.tree.map(lambda spec: NamedSharding(mesh, mesh_spec(spec, rules)), logical_axes_tree,
                      is_leaf=lambda x: isinstance(x, PartitionSpec))


def batch_axes(rules: Rules | None = None) -> tuple[str, ...]:
  """The mesh axes the batch (the leading axis of every batch array) splits over: the "batch" rule's."""
  return dict(active_rules() if rules is None else rules).get("batch", ())


def batch_sharding(mesh: Mesh, rules: Rules | None = None) -> NamedSharding:
  """Leading (batch) axis split over the batch rule's mesh axes, everything else replicated."""
  rules = active_rules() if rules is None else rules
  _check_mesh_has(mesh, rules)
  return NamedSharding(mesh, mesh_spec(PartitionSpec("batch"), rules))


def batch_shards(mesh: Mesh, rules: Rules | None = None) -> int:
  """How many pieces the batch sharding cuts the rows into: the product of the batch axes' sizes."""
  return math.prod(mesh.shape[a] for a in batch_axes(rules))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def _check_mesh_has(mesh: Mesh, rules: Rules) -> None:
  for name, axes in rules:
    missing = [a for a in axes if a not in mesh.axis_names]
    if missing:
      raise ValueError(f"the sharding rule for logical axis {name!r} names mesh axes {missing}, which a mesh "
                       f"with axes {mesh.axis_names} lacks; build the mesh with rr.sharding.make_mesh")
