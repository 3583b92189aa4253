"""Data parallelism on JAX's own runtime: one program over a device mesh, across hosts.

A :func:`make_mesh` mesh has one axis, :data:`DATA`. What lies along it:

* the acting envs (observations, actions, a pure env's state: their leading ``N`` axis);
* the replay, by env stream (each device holds its own envs' transitions);
* the train batch and the reanalysis roots (their leading axis), constrained with
  :func:`along_data` inside the learner;
* or, for runs trained side by side (``agents.loop.train_runs``), the runs axis instead.

Parameters and optimiser state are replicated. Nothing here reduces gradients by hand: the
loss is a mean over a batch that lies along ``data``, and ``jax.jit`` with these shardings
(XLA's SPMD partitioner) inserts the all-reduce. The code is the single-device code; without a
mesh (:func:`current_data_axis` is ``None``) every helper here is the identity, so the
single-device path compiles the same program as before.

Several hosts: :func:`initialize` joins them with ``jax.distributed`` (the coordinator's
address, the process count and this process's id, from arguments or the environment, or
detected by JAX on SLURM and other clusters); the mesh then spans every host's devices and
each host steps the envs that lie on its own devices.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

DATA = "data"  # the mesh axis that batches, envs, the replay (or runs) lie along
ENV_COORDINATOR, ENV_NUM_PROCESSES, ENV_PROCESS_ID = "DREAMER_COORDINATOR", "DREAMER_NUM_PROCESSES", "DREAMER_PROCESS_ID"


def initialize(coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None) -> bool:
    """Joins the processes of a multi-host run through ``jax.distributed.initialize``.

    Arguments left ``None`` come from ``DREAMER_COORDINATOR`` (``host:port`` of process 0),
    ``DREAMER_NUM_PROCESSES`` and ``DREAMER_PROCESS_ID``; when none is set anywhere nothing is
    done (one process) and ``False`` is returned. ``coordinator="auto"`` lets JAX read them from
    the cluster (SLURM, Open MPI, Kubernetes). On a CPU backend the processes' collectives run
    over gloo. Call it before anything touches a device."""
    coordinator = coordinator or os.environ.get(ENV_COORDINATOR)
    if num_processes is None and os.environ.get(ENV_NUM_PROCESSES):
        num_processes = int(os.environ[ENV_NUM_PROCESSES])
    if process_id is None and os.environ.get(ENV_PROCESS_ID):
        process_id = int(os.environ[ENV_PROCESS_ID])
    if coordinator is None and num_processes is None and process_id is None:
        return False
    if coordinator != "auto" and (coordinator is None or num_processes is None or process_id is None):
        raise ValueError("a multi-host run needs the coordinator address, the process count and this process's id "
                         f"(--coordinator / {ENV_COORDINATOR}, --num-processes / {ENV_NUM_PROCESSES}, --process-id / "
                         f"{ENV_PROCESS_ID}), or --coordinator auto on a cluster JAX knows")
    if coordinator != "auto" and not 0 <= process_id < num_processes:
        raise ValueError(f"process id {process_id} is not in [0, {num_processes})")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU devices across processes
    if coordinator == "auto":
        jax.distributed.initialize()
    else:
        jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id)
    return True


def make_mesh(devices: int | None = None) -> Mesh:
    """A 1-D mesh with axis :data:`DATA` over the first ``devices`` devices (all of every host's
    by default), partitioned by XLA (``AxisType.Auto``: shardings propagate through the code)."""
    available = jax.devices()
    n = len(available) if devices is None else int(devices)
    if not 1 <= n <= len(available):
        raise ValueError(f"asked for {n} devices; {len(available)} are available ({available[0].platform})")
    if jax.process_count() > 1 and n != len(available):
        raise ValueError(f"a multi-host run uses every device of every host ({len(available)}), not {n}")
    return Mesh(np.asarray(available[:n]), (DATA,), axis_types=(AxisType.Auto,))


def current_data_axis() -> str | None:
    """:data:`DATA` when tracing under a mesh (``jax.set_mesh``) that has that axis with more
    than one device, else ``None``."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or DATA not in mesh.axis_names or mesh.shape[DATA] == 1:
        return None
    return DATA


def along_data(tree: Any, axis: int = 0) -> Any:
    """Every leaf of ``tree`` constrained to lie along :data:`DATA` on its axis ``axis`` (the
    others replicated): the batch, the search roots. The identity without a data mesh."""
    if current_data_axis() is None:
        return tree
    spec = PartitionSpec(*([None] * axis), DATA)
    return jax.tree_util.tree_map(lambda x: jax.lax.with_sharding_constraint(x, spec), tree)


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def leading(mesh: Mesh) -> NamedSharding:
    """Sharded along :data:`DATA` on the leading axis."""
    return NamedSharding(mesh, PartitionSpec(DATA))


def by_leading_axis(tree: Any, mesh: Mesh, size: int) -> Any:
    """Shardings for ``tree`` (arrays or shape structs): leaves whose leading axis is ``size``
    long lie along :data:`DATA` on it, the others (scalars, counters) are replicated."""
    return jax.tree_util.tree_map(
        lambda x: leading(mesh) if getattr(x, "ndim", 0) >= 1 and x.shape[0] == size else replicated(mesh), tree)


def place(tree: Any, shardings: Any) -> Any:
    """``tree`` on the devices as ``shardings`` say. Host (NumPy) leaves are the global value,
    identical on every host; each host puts only the slices its own devices hold."""

    def put(x, sharding):
        if sharding.is_fully_addressable:  # one host
            return jax.device_put(x, sharding)
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            if x.sharding == sharding:
                return x
            x = x.addressable_data(0) if x.is_fully_replicated else None
            if x is None:
                raise ValueError("place() moves multi-host arrays only when they are replicated")
        # device_put would check with the other hosts that the values agree (a collective of
        # its own, out of step with the loop's programs): each host puts its slices instead
        data = np.asarray(x)
        return jax.make_array_from_callback(data.shape, sharding, lambda index: data[index])

    return jax.tree_util.tree_map(put, tree, shardings)


def host_local(x: Any) -> np.ndarray:
    """The part of a leading-axis-sharded array that lives on this host's devices, in order
    (the whole array in a single-host run)."""
    if not isinstance(x, jax.Array) or x.is_fully_addressable:
        return np.asarray(x)
    shards = sorted(x.addressable_shards, key=lambda s: s.index[0].start or 0)
    seen, parts = set(), []
    for s in shards:
        start = s.index[0].start or 0
        if start not in seen:
            seen.add(start)
            parts.append(np.asarray(s.data))
    return np.concatenate(parts)


def fetch(tree: Any) -> Any:
    """``jax.device_get`` for values every process holds whole (metrics, counters: replicated
    over a multi-host mesh): this process's copy of each."""
    def local(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            if not x.is_fully_replicated:
                raise ValueError(f"an array of shape {x.shape} is split over the hosts: no process can read it whole")
            return x.addressable_data(0)
        return x

    return jax.device_get(jax.tree_util.tree_map(local, tree))


def is_primary() -> bool:
    """Whether this process writes the run's files (process 0 of a multi-host run)."""
    return jax.process_index() == 0
