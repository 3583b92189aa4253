"""The planner: Monte Carlo tree search over any :class:`~dreamer.world_model.WorldModel`.

One call, :func:`plan`, serves acting and reanalysis. It wraps ``mctx`` and adds what
EfficientZero needs and mctx does not have:

* the value prefix turned into per-step rewards inside ``recurrent_fn`` (difference of
  consecutive prefixes, the prefix memory carried in the embedding and reset where
  :func:`~dreamer.world_model.starts_prefix_segment` says);
* EfficientZero's tree-wide min-max normalisation of Q-values with a range floor, as a
  custom qtransform (:func:`min_max_qtransform`).

The planner never calls ``jax.jit`` and reads no global state: jit or vmap it yourself.
Static sizes come from ``config`` (a frozen, hashable dataclass) and array shapes.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import mctx
import numpy as np

from dreamer.config import PlannerConfig
from dreamer.world_model import InitialOutput, Params, WorldModel, starts_prefix_segment


class PlanOutput(NamedTuple):
    """Result of :func:`plan`; ``B`` batch, ``A`` actions."""

    action: jnp.ndarray  # [B] int32, the action to take
    action_weights: jnp.ndarray  # [B, A], the search policy (the policy target)
    root_value: jnp.ndarray  # [B], the search value at the root
    predicted_value: jnp.ndarray  # [B], the network's value at the root
    tree: mctx.Tree | None  # the full search tree (None without search: num_simulations=0)
    root_state: Any = None  # the model's state at the root (its initial inference)


class Embedding(NamedTuple):
    """What mctx carries per node: the model state plus the value-prefix bookkeeping."""

    state: Any  # the model's latent state pytree
    prefix: jnp.ndarray  # [B] the node's value prefix (0 at the root)
    depth: jnp.ndarray  # [B] int32 steps from the root


# ---------------------------------------------------------------------------------------
# Root and recurrent function


def make_root(initial: InitialOutput) -> mctx.RootFnOutput:
    """Turns the model's initial inference into mctx's root (prefix memory cleared)."""
    value = jnp.asarray(initial.value, jnp.float32)
    batch = value.shape[0]
    embedding = Embedding(
        state=initial.state,
        prefix=jnp.zeros((batch,), jnp.float32),
        depth=jnp.zeros((batch,), jnp.int32),
    )
    return mctx.RootFnOutput(
        prior_logits=jnp.asarray(initial.policy_logits, jnp.float32), value=value, embedding=embedding
    )


def _select(mask: jnp.ndarray, a: Any, b: Any) -> Any:
    """Per-batch-row ``where`` over two pytrees of the same structure."""

    def pick(x, y):
        m = mask.reshape(mask.shape + (1,) * (x.ndim - 1))
        return jnp.where(m, x, y)

    return jax.tree_util.tree_map(pick, a, b)


def make_recurrent_fn(model: WorldModel, config: PlannerConfig):
    """Builds mctx's ``recurrent_fn(params, rng, action, embedding)`` for ``model``.

    For value-prefix models, the reward of an edge is ``prefix(child) - prefix(parent)``,
    with the parent's prefix taken as 0 and the model's prefix memory cleared
    (``model.reset_value_prefix``) where the edge starts a prefix segment
    (:func:`~dreamer.world_model.starts_prefix_segment`), as EfficientZero does in its tree.
    """
    value_prefix = bool(getattr(model, "value_prefix", False))
    horizon = int(getattr(model, "value_prefix_horizon", 1))

    def recurrent_fn(params: Params, rng: jnp.ndarray, action: jnp.ndarray, embedding: Embedding):
        del rng
        depth = embedding.depth + 1
        state, parent_prefix = embedding.state, embedding.prefix
        if value_prefix:
            reset = starts_prefix_segment(depth, horizon)
            state = _select(reset, model.reset_value_prefix(state), state)
            parent_prefix = jnp.where(reset, 0.0, parent_prefix)
        out = model.recurrent_inference(params, state, action)
        prefix = jnp.asarray(out.reward, jnp.float32)
        discount = jnp.full_like(prefix, config.discount)
        if out.discount is not None:
            discount = discount * jnp.asarray(out.discount, jnp.float32)
        reward = prefix - parent_prefix if value_prefix else prefix
        step = mctx.RecurrentFnOutput(
            reward=reward,
            discount=discount,
            prior_logits=jnp.asarray(out.policy_logits, jnp.float32),
            value=jnp.asarray(out.value, jnp.float32),
        )
        return step, Embedding(out.state, prefix, depth)

    return recurrent_fn


# ---------------------------------------------------------------------------------------
# Q transforms


def min_max_qtransform(tree: mctx.Tree, node_index: jnp.ndarray, *, floor: float = 0.01) -> jnp.ndarray:
    """EfficientZero's tree-wide min-max Q normalisation, for one *unbatched* tree.

    ``Q(s, a) = r(s, a) + discount(s, a) * V(child)`` over every visited edge of the tree
    gives ``q_min`` and ``q_max``; the children of ``node_index`` are scored
    ``clip((Q - q_min) / max(q_max - q_min, floor), 0, 1)``. An unvisited child is
    scored as the mean Q of its visited siblings, or the node's own value when none is
    visited yet (EfficientZero's ``mean_q`` rule).

    Unlike EfficientZero, whose statistics accumulate every Q seen during backups,
    the range here is taken over the tree's *current* Q-values, which is a pure function
    of the tree and needs no extra state.

    Returns: ``[A]`` scores in [0, 1].
    """
    q_min, q_max, _ = _tree_q_range(tree)
    q = tree.qvalues(node_index)  # [A]
    visited = tree.children_visits[node_index] > 0
    n_visited = jnp.sum(visited)
    mean_q = jnp.where(
        n_visited > 0,
        jnp.sum(jnp.where(visited, q, 0.0)) / jnp.maximum(n_visited, 1),
        tree.node_values[node_index],
    )
    q = jnp.where(visited, q, mean_q)
    scale = jnp.maximum(q_max - q_min, floor)
    return jnp.clip((q - q_min) / scale, 0.0, 1.0)


def _tree_q_range(tree: mctx.Tree) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
    """``(q_min, q_max, any_visited)`` of ``r + discount * V(child)`` over every visited edge of
    an unbatched tree: EfficientZero's tree-wide min-max statistics."""
    visited = tree.children_visits > 0  # [N, A]
    q_all = tree.children_rewards + tree.children_discounts * tree.children_values
    any_visited = jnp.any(visited)
    q_min = jnp.where(any_visited, jnp.min(jnp.where(visited, q_all, jnp.inf)), 0.0)
    q_max = jnp.where(any_visited, jnp.max(jnp.where(visited, q_all, -jnp.inf)), 0.0)
    return q_min, q_max, any_visited


def completed_qvalues(tree: mctx.Tree, node_index: jnp.ndarray) -> jnp.ndarray:
    """Completed Q of a node's children, unbatched ``[A]``: visited children keep their Q,
    the others get the node's mixed value (the network value interpolated with the
    prior-weighted Q of the visited children; Danihelka et al. 2022, Appendix D)."""
    q = tree.qvalues(node_index)
    visits = tree.children_visits[node_index]
    prior = jnp.maximum(jax.nn.softmax(tree.children_prior_logits[node_index]), jnp.finfo(jnp.float32).tiny)
    visited = visits > 0
    total = jnp.sum(visits)
    prior_visited = jnp.sum(jnp.where(visited, prior, 0.0))
    weighted_q = jnp.sum(jnp.where(visited, prior * q, 0.0)) / jnp.where(prior_visited > 0, prior_visited, 1.0)
    mixed = (tree.raw_values[node_index] + total * weighted_q) / (total + 1)
    return jnp.where(visited, q, mixed)


def completed_min_max_qtransform(tree: mctx.Tree, node_index: jnp.ndarray, *, floor: float = 0.01,
                                 value_scale: float = 0.1, maxvisit_init: float = 50.0) -> jnp.ndarray:
    """EfficientZero V2's Gumbel qtransform, for one *unbatched* tree.

    The completed Q values (:func:`completed_qvalues`) are normalised with the tree-wide
    min-max statistics and a range floor (``(q - q_min) / max(q_max - q_min, floor)``,
    clipped to [0, 1]; with no range yet, the values are only clipped), then scaled by
    ``(maxvisit_init + max child visits) * value_scale``. Unlike mctx's default
    (``rescale_values=True``: min-max over the node's own children with a floor of 1e-8),
    a Q gap far below the tree's value range stays a small bonus instead of a full unit.

    Returns: ``[A]`` values to add to the prior logits.
    """
    q = completed_qvalues(tree, node_index)
    q_min, q_max, _ = _tree_q_range(tree)
    ranged = q_max > q_min
    normalised = jnp.where(ranged, (jnp.clip(q, q_min, q_max) - q_min) / jnp.maximum(q_max - q_min, floor), q)
    visit_scale = maxvisit_init + jnp.max(tree.children_visits[node_index])
    return visit_scale * value_scale * jnp.clip(normalised, 0.0, 1.0)


def root_diagnostics(out: "PlanOutput") -> dict[str, jnp.ndarray]:
    """Per-root search diagnostics ``[B]``: the spread (max - min) of the root's completed Q
    values, and the entropy of the search policy. A spread far below the model's value
    error means the search cannot tell the actions apart (without search it is 0)."""
    p = out.action_weights
    entropy = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0), axis=-1)
    if out.tree is None:
        return {"search/root_q_spread": jnp.zeros_like(entropy), "search/policy_entropy": entropy}
    q = jax.vmap(completed_qvalues, in_axes=(0, None))(out.tree, jnp.int32(mctx.Tree.ROOT_INDEX))
    return {"search/root_q_spread": jnp.max(q, -1) - jnp.min(q, -1), "search/policy_entropy": entropy}


def make_qtransform(config: PlannerConfig):
    """The qtransform named by ``config.qtransform`` (see ``PlannerConfig.resolved_qtransform``)."""
    name = config.resolved_qtransform
    if name == "min_max":
        return functools.partial(min_max_qtransform, floor=config.min_max_floor)
    if name == "parent_siblings":
        return mctx.qtransform_by_parent_and_siblings
    if name == "completed_min_max":
        return functools.partial(
            completed_min_max_qtransform,
            floor=float(config.min_max_floor),
            value_scale=float(config.value_scale),
            maxvisit_init=float(config.maxvisit_init),
        )
    if name == "completed_mix":
        return functools.partial(
            mctx.qtransform_completed_by_mix_value,
            value_scale=float(config.value_scale),
            maxvisit_init=float(config.maxvisit_init),
            rescale_values=bool(config.rescale_values),
        )
    raise ValueError(f"unknown qtransform {name!r}")


# ---------------------------------------------------------------------------------------
# Input checks (trace time)


def _is_concrete(x: Any) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _raise_if_all_masked(invalid: np.ndarray) -> None:
    rows = np.nonzero(np.all(np.asarray(invalid) > 0, axis=-1))[0]
    if rows.size:
        raise ValueError(
            f"invalid_actions forbids every action in batch row(s) {rows[:8].tolist()}; "
            "expected at least one valid (0/False) entry per row"
        )


def check_inputs(model: WorldModel, obs: Any, invalid_actions: Any, config: PlannerConfig) -> None:
    """Raises ``ValueError`` naming what was expected and what was given."""
    if not isinstance(config, PlannerConfig):
        raise ValueError(f"config must be a dreamer.PlannerConfig, got {type(config).__name__}")
    config.validate()
    for attr in ("num_actions", "observation_shape", "initial_inference", "recurrent_inference"):
        if not hasattr(model, attr):
            raise ValueError(f"model does not satisfy the WorldModel contract: missing {attr!r}")
    if getattr(model, "value_prefix", False) and not hasattr(model, "reset_value_prefix"):
        raise ValueError("a value-prefix model must implement reset_value_prefix(state)")
    expected = tuple(model.observation_shape)
    shape = tuple(getattr(obs, "shape", ()))
    if len(shape) != len(expected) + 1 or shape[1:] != expected:
        raise ValueError(f"observation shape: expected [B, {', '.join(map(str, expected))}], got {list(shape)}")
    want_dtype = getattr(model, "observation_dtype", None)
    if want_dtype is not None and jnp.dtype(obs.dtype) != jnp.dtype(want_dtype):
        raise ValueError(f"observation dtype: expected {jnp.dtype(want_dtype).name}, got {jnp.dtype(obs.dtype).name}")
    if invalid_actions is not None:
        ishape = tuple(jnp.shape(invalid_actions))
        if ishape != (shape[0], model.num_actions):
            raise ValueError(
                f"invalid_actions shape: expected [B, A] = [{shape[0]}, {model.num_actions}] "
                f"(model.num_actions = {model.num_actions}), got {list(ishape)}"
            )
        if _is_concrete(invalid_actions):
            _raise_if_all_masked(np.asarray(invalid_actions))


# ---------------------------------------------------------------------------------------
# The planner


def search(
    params: Params,
    rng: jnp.ndarray,
    root: mctx.RootFnOutput,
    *,
    recurrent_fn,
    num_actions: int,
    config: PlannerConfig,
    invalid_actions: jnp.ndarray | None = None,
    temperature: float | jnp.ndarray = 1.0,
) -> mctx.PolicyOutput:
    """Runs pUCT or Gumbel search from a prepared root. Lower level than :func:`plan`."""
    if root.prior_logits.shape[-1] != num_actions:
        raise ValueError(
            f"policy logits: expected {num_actions} actions, got {root.prior_logits.shape[-1]}"
        )
    qtransform = make_qtransform(config)
    if config.search == "puct":
        return mctx.muzero_policy(
            params,
            rng,
            root,
            recurrent_fn,
            num_simulations=config.num_simulations,
            invalid_actions=invalid_actions,
            max_depth=config.max_depth,
            qtransform=qtransform,
            # float(): mctx asserts Python floats here, and PlannerConfig(dirichlet_fraction=0)
            # would otherwise fail inside chex with "has type int64 but expected float".
            dirichlet_fraction=float(config.dirichlet_fraction),
            dirichlet_alpha=float(config.dirichlet_alpha),
            pb_c_init=float(config.pb_c_init),
            pb_c_base=float(config.pb_c_base),
            temperature=temperature,
        )
    return mctx.gumbel_muzero_policy(
        params,
        rng,
        root,
        recurrent_fn,
        num_simulations=config.num_simulations,
        invalid_actions=invalid_actions,
        max_depth=config.max_depth,
        qtransform=qtransform,
        max_num_considered_actions=min(config.max_num_considered_actions, num_actions),
        gumbel_scale=float(config.gumbel_scale),
    )


def plan(
    params: Params,
    rng: jnp.ndarray,
    obs: jnp.ndarray,
    *,
    model: WorldModel,
    config: PlannerConfig,
    invalid_actions: jnp.ndarray | None = None,
    temperature: float | jnp.ndarray = 1.0,
) -> PlanOutput:
    """Plans from a batch of observations.

    Args:
      params: the model's parameters (any pytree; passed through to the model).
      rng: a PRNG key.
      obs: ``[B, *model.observation_shape]`` observations.
      model: a :class:`~dreamer.world_model.WorldModel`.
      config: a :class:`~dreamer.config.PlannerConfig` (search kind, simulations, ...).
      invalid_actions: optional ``[B, A]`` mask, nonzero/True = forbidden at the root.
      temperature: pUCT action sampling temperature over visit counts (0 = most
        visited). Gumbel search ignores it; its action is the sequential-halving winner.

    Returns:
      :class:`PlanOutput` with the action ``[B]``, the search policy ``[B, A]``, the
      root search value ``[B]``, the network value at the root ``[B]`` and the tree.

    Raises:
      ValueError: at trace time, for a wrong observation shape or dtype, an action-count
        mismatch between model and mask, or (when the mask is concrete) a row of the mask
        that forbids every action.
    """
    check_inputs(model, obs, invalid_actions, config)
    initial = model.initial_inference(params, obs)
    root = make_root(initial)
    if invalid_actions is not None:
        invalid_actions = jnp.asarray(invalid_actions).astype(jnp.float32)
    if config.num_simulations == 0:
        return prior_policy(rng, root, initial.state, config, invalid_actions, temperature)
    out = search(
        params,
        rng,
        root,
        recurrent_fn=make_recurrent_fn(model, config),
        num_actions=model.num_actions,
        config=config,
        invalid_actions=invalid_actions,
        temperature=temperature,
    )
    root_value = out.search_tree.node_values[:, mctx.Tree.ROOT_INDEX]
    return PlanOutput(
        action=out.action.astype(jnp.int32),
        action_weights=out.action_weights,
        root_value=root_value,
        predicted_value=root.value,
        tree=out.search_tree,
        root_state=initial.state,
    )


def prior_policy(rng: jnp.ndarray, root: mctx.RootFnOutput, root_state: Any, config: PlannerConfig,
                 invalid_actions: jnp.ndarray | None, temperature: float | jnp.ndarray) -> PlanOutput:
    """:func:`plan` without search (``num_simulations=0``): the prior (the policy head, with
    invalid actions masked) is the policy target, the network's value the root value, and the
    action is drawn as the search would draw it with nothing to improve the prior: Gumbel-max
    over the prior logits (``gumbel_scale``; 0 plays the argmax), or for pUCT a sample at
    ``temperature`` (0: the argmax). The no-planning end of a sweep over simulations."""
    logits = root.prior_logits
    if invalid_actions is not None:
        logits = jnp.where(invalid_actions > 0, -jnp.inf, logits)
    weights = jax.nn.softmax(logits, axis=-1)
    if config.search == "gumbel":
        noise = float(config.gumbel_scale) * jax.random.gumbel(rng, logits.shape)
        action = jnp.argmax(logits + noise, axis=-1)
    else:
        temperature = jnp.asarray(temperature, jnp.float32)
        tempered = logits / jnp.maximum(temperature, 1e-6)
        sampled = jax.random.categorical(rng, tempered, axis=-1)
        action = jnp.where(temperature > 0, sampled, jnp.argmax(logits, axis=-1))
    return PlanOutput(action=action.astype(jnp.int32), action_weights=weights, root_value=root.value,
                      predicted_value=root.value, tree=None, root_state=root_state)
