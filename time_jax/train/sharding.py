"""The device mesh and the one table of logical-axis rules (maxtext / t5x style).

Models name parameter axes (``'embed'``, ``'mlp'``, ...) with
``nn.with_logical_partitioning``; `RULES` maps those names to mesh axes here and
nowhere else. Batches are split over ``('data', 'fsdp')``: ``fsdp`` shards parameters
and optimizer state along ``embed`` as well as the batch (ZeRO-3); ``model`` shards
``mlp`` and ``heads`` (tensor parallelism).
"""

from __future__ import annotations

import logging
import math
from typing import Any, Sequence

import jax
import ml_collections
import numpy as np
from flax import linen as nn
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

AXES = ("data", "fsdp", "model")
BATCH = ("data", "fsdp")  # mesh axes the batch dimension is split over

# logical axis -> mesh axis (or None: replicated). Keep in sync with the names models use.
RULES: tuple[tuple[str, Any], ...] = (
    ("batch", BATCH),
    ("embed", "fsdp"),
    ("decoder_embed", "fsdp"),
    ("mlp", "model"),
    ("heads", "model"),
    ("kv", None),
    ("classes", None),
    ("patch", None),
    ("conv_in", None),
    ("conv_out", "fsdp"),
    ("norm", None),
)


def mesh_shape(mesh_config: ml_collections.ConfigDict, num_devices: int) -> tuple[int, ...]:
  """``(data, fsdp, model)`` sizes; a single -1 takes the devices left over.

  Raises:
    ValueError: naming ``config.mesh`` when the sizes do not multiply to the devices.
  """
  sizes = [int(mesh_config[a]) for a in AXES]
  if sum(s == -1 for s in sizes) > 1 or any(s == 0 or s < -1 for s in sizes):
    raise ValueError(f"config.mesh: {dict(zip(AXES, sizes))}; sizes must be >= 1 with at "
                     "most one -1 (the remaining devices).")
  known = math.prod(s for s in sizes if s != -1)
  if -1 in sizes:
    if num_devices % known:
      raise ValueError(f"config.mesh: {dict(zip(AXES, sizes))} does not divide the "
                       f"{num_devices} devices.")
    sizes[sizes.index(-1)] = num_devices // known
  if math.prod(sizes) != num_devices:
    raise ValueError(f"config.mesh: {dict(zip(AXES, sizes))} spans {math.prod(sizes)} "
                     f"devices, but there are {num_devices}; use -1 for one axis.")
  return tuple(sizes)


def make_mesh(mesh_config: ml_collections.ConfigDict,
              devices: Sequence[jax.Device] | None = None) -> Mesh:
  """The ``('data', 'fsdp', 'model')`` mesh over ``devices`` (default: all processes')."""
  devices = list(jax.devices() if devices is None else devices)
  shape = mesh_shape(mesh_config, len(devices))
  try:
    from jax.experimental import mesh_utils  # pylint: disable=g-import-not-at-top
    grid = mesh_utils.create_device_mesh(shape, devices)
  except (ValueError, NotImplementedError, AssertionError):
    grid = np.asarray(devices).reshape(shape)
  return Mesh(grid, AXES)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) dimension over ``data × fsdp``, the rest replicated."""
  return NamedSharding(mesh, P(BATCH))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def _fit(spec: P, shape: Sequence[int], mesh: Mesh, name: str) -> P:
  """Drops mesh axes from dimensions they do not divide (e.g. 101 classes over 2)."""
  out = []
  for dim, axes in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
    if axes is None:
      out.append(None)
      continue
    size = math.prod(mesh.shape[a] for a in ((axes,) if isinstance(axes, str) else axes))
    if dim % size:
      logging.info("sharding: %s dimension %d is not divisible by %s=%d; replicated.",
                   name, dim, axes, size)
      out.append(None)
    else:
      out.append(axes)
  return P(*out)


def shardings(abstract_boxed: Any, mesh: Mesh, rules=RULES) -> Any:
  """NamedShardings of a tree whose leaves may be ``nn.LogicallyPartitioned``.

  Args:
    abstract_boxed: e.g. ``jax.eval_shape(model.init, ...)``; unboxed leaves are
      replicated.
    mesh: the device mesh.
    rules: logical -> mesh axis rules.

  Returns:
    the unboxed tree structure with a ``NamedSharding`` per leaf.
  """
  specs = nn.get_partition_spec(abstract_boxed)
  mesh_specs = nn.logical_to_mesh(specs, rules)
  shapes = nn.unbox(abstract_boxed)
  paths_shapes = jax.tree_util.tree_flatten_with_path(shapes)[0]
  spec_leaves = jax.tree_util.tree_leaves(mesh_specs, is_leaf=lambda x: isinstance(x, P))
  treedef = jax.tree_util.tree_structure(shapes)
  fitted = [
      NamedSharding(mesh, _fit(spec, leaf.shape, mesh, jax.tree_util.keystr(path)))
      for (path, leaf), spec in zip(paths_shapes, spec_leaves)]
  return jax.tree_util.tree_unflatten(treedef, fitted)


def describe(mesh: Mesh) -> str:
  """A one-line description of the mesh, for the start-up log."""
  return (f"mesh {dict(mesh.shape)} over {mesh.devices.size} devices "
          f"({jax.process_count()} process(es), {mesh.devices.flat[0].platform})")
