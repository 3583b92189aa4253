"""The agent contract: a container of pure functions over an explicit state.

An :class:`Agent` is what the training loop drives. Every function is pure and
jittable, the loop jits them (or fuses them with a pure env into one program), and the
state is one pytree, so it checkpoints as it is:

* ``init(rng) -> state``
* ``act(state, rng, obs [N, ...], temperature) -> ActOutput``: exploration while training
* ``greedy(params, rng, obs) -> ActOutput``: evaluation; needs the params only, so a
  script can evaluate a checkpoint without building the replay
* ``observe(state, Transition) -> state``: store one vector step
* ``train(state) -> (state, metrics)``: ``updates_per_call`` updates; metrics are a flat
  dict of scalars named ``group/name``
* ``params(state) -> params``: the parameters ``greedy`` takes

On a device mesh (:mod:`dreamer.sharding`) the loop places the state as ``shardings(state
shapes, mesh)`` says (an agent's replay along the envs, its params replicated).

``act`` and ``greedy`` take observations, or, for an agent whose ``acts_on`` is
``"env_state"`` (one that plans in the env's own simulator), the state of a pure JAX env
(:class:`agents.envs.base.FunctionalEnv`), which the loop then passes instead.

EfficientZero (``agents/efficientzero``) is one agent; ``agents/maze`` plans in a known
model with the same planner.

**Runs in lockstep.** The loop may ``jax.vmap`` these functions over independent runs (seeds)
with the axis name :data:`RUNS_AXIS`. Every run then takes the same steps at the same
time, so a branch on a counter (a target refresh every ``k`` updates) is the same in all of
them; :func:`in_lockstep` lets such a branch stay a real ``lax.cond`` under that vmap, where
a per-run predicate would make jax compute both branches for every run.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

RUNS_AXIS = "runs"  # the vmap axis name of runs trained side by side (agents.loop)


def in_lockstep(x: jnp.ndarray) -> jnp.ndarray:
    """A scalar counter or predicate made one value for every run of a group vmapped over
    :data:`RUNS_AXIS` (its maximum over the runs, which agree anyway in lockstep), so that
    ``lax.cond`` on it stays a branch and a loop bound stays a bound; outside such a vmap,
    ``x`` itself."""
    x = jnp.asarray(x)
    try:
        top = jax.lax.pmax(x.astype(jnp.int32) if x.dtype == jnp.bool_ else x, RUNS_AXIS)
    except NameError:  # no vmap over RUNS_AXIS around this trace
        return x
    return top > 0 if x.dtype == jnp.bool_ else top


class ActOutput(NamedTuple):
    """What acting returns for ``N`` envs."""

    action: jnp.ndarray  # [N] int32
    policy: jnp.ndarray  # [N, A] the search policy
    root_value: jnp.ndarray  # [N] the search value
    predicted_value: jnp.ndarray  # [N] the network's value
    metrics: Any = None  # optional {name: [N]} diagnostics; the loop logs their means


class Transition(NamedTuple):
    """One vector step as the agent stores it (leading axis ``N`` everywhere)."""

    frame: Any  # [N, *frame_shape] the newest frame of the observation acted on
    action: Any  # [N]
    reward: Any  # [N]
    terminated: Any  # [N] bool: the episode ended in a terminal state
    truncated: Any  # [N] bool: it was cut (time limit); the future is unknown, not zero
    first: Any  # [N] bool: ``frame`` is the first of its episode
    acted: ActOutput  # what ``act`` returned for this step


class Agent(NamedTuple):
    """Pure functions over an explicit agent state (see the module docstring)."""

    init: Callable[[Any], Any]
    act: Callable[[Any, Any, Any, Any], ActOutput]
    greedy: Callable[[Any, Any, Any], ActOutput]
    observe: Callable[[Any, Transition], Any]
    train: Callable[[Any], tuple[Any, dict]]
    params: Callable[[Any], Any]
    updates_per_call: int = 1
    acts_on: str = "observation"  # what act and greedy take: "observation" or "env_state" (a pure env's state)
    # (state shapes, mesh) -> the state's shardings on a data mesh (dreamer.sharding); None: all replicated
    shardings: Callable[[Any, Any], Any] | None = None
