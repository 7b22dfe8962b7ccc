"""Device mesh and the rules that map logical axis names onto it.

Parameters name their axes logically ("vocab", "embed", "mlp", "heads", ...);
LOGICAL_RULES says which mesh axis, if any, shards each name. The same step
function then runs on 1 CPU, 8 forced CPU devices, a GPU or a TPU pod: only
the mesh changes. Mesh axes are ("data", "model").
"""

import jax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "model")

LOGICAL_RULES: tuple[tuple[str, str | None], ...] = (
    ("batch", "data"),
    ("vocab", "model"),
    ("mlp", "model"),
    ("heads", "model"),
    ("kv_heads", "model"),
    ("embed", None),
    ("head_dim", None),
    ("norm", None),
)


def make_mesh(data: int = -1, model: int = 1, devices=None) -> Mesh:
  """A ("data", "model") mesh over all devices; data=-1 takes the devices model leaves."""
  devices = list(jax.devices() if devices is None else devices)
  count = len(devices)
  if model < 1 or data == 0 or data < -1:
    raise ValueError(f"make_mesh(data={data}, model={model}): model must be >= 1 and data >= 1 "
                     f"or -1 (all remaining devices)")
  if data == -1:
    if count % model:
      raise ValueError(f"make_mesh: model={model} does not divide the {count} available devices; "
                       f"pick a model size that divides {count}")
    data = count // model
  if data * model != count:
    raise ValueError(f"make_mesh: data={data} x model={model} = {data * model} devices, but "
                     f"{count} are available; make the product {count} or pass data=-1")
  # jax.make_mesh orders devices by physical topology (TPU/GPU); Auto axes keep
  # jit's sharding propagation (not sharding-in-types).
  return jax.make_mesh((data, model), MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES),
                       devices=devices)


def _mesh_spec(logical_spec: PartitionSpec, rules: dict) -> PartitionSpec:
  """Logical names -> mesh axes; a mesh axis already used earlier in the spec is not reused."""
  used, axes = set(), []
  for name in logical_spec:
    if name is None:
      axes.append(None)
      continue
    if name not in rules:
      raise ValueError(f"logical axis {name!r} has no sharding rule; rules cover {sorted(rules)}")
    mesh_axis = rules[name]
    if mesh_axis is not None and mesh_axis in used:
      mesh_axis = None
    used.add(mesh_axis)
    axes.append(mesh_axis)
  return PartitionSpec(*axes)


def logical_to_shardings(logical_axes_tree, mesh: Mesh, rules=LOGICAL_RULES):
  """Maps a pytree of logical PartitionSpecs to NamedShardings on `mesh`.

  Sharding a dimension requires its size to be divisible by the mesh axis
  (e.g. num_kv_heads by the model axis); choose the mesh accordingly.
  """
  rules = dict(rules)
  return jax.tree.map(lambda spec: NamedSharding(mesh, _mesh_spec(spec, rules)), logical_axes_tree,
                      is_leaf=lambda x: isinstance(x, PartitionSpec))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over "data", everything else replicated."""
  return NamedSharding(mesh, PartitionSpec("data"))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())
