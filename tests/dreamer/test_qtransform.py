"""EfficientZero V2's Gumbel qtransform (completed Q over the tree-wide min-max, range floor)
against a NumPy reference, and what it changes for near-equal actions."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import mctx
import numpy as np
import pytest

from dreamer import InitialOutput, PlannerConfig, RecurrentOutput, plan
from dreamer.planner import completed_min_max_qtransform

NUM_ARMS = 4


class Bandit:
    """A one-step bandit: arm ``a`` pays ``params["reward"][a]`` and ends the episode.

    A random depth-2 variant (``params["depth2"]``) continues one more step with rewards
    ``params["reward2"][a]`` so that trees have interior nodes too.
    """

    num_actions = NUM_ARMS
    observation_shape = (1,)

    def initial_inference(self, params, obs):
        b = obs.shape[0]
        return InitialOutput(jnp.zeros(b, jnp.int32), params["value0"] * jnp.ones(b), jnp.zeros((b, NUM_ARMS)))

    def recurrent_inference(self, params, depth, action):
        reward = jnp.where(depth == 0, params["reward"][action], params["reward2"][action])
        alive = (depth == 0) & params["depth2"]
        return RecurrentOutput(depth + 1, reward, jnp.zeros_like(reward), params["logits"][action],
                               discount=alive.astype(jnp.float32))


def reference(tree: mctx.Tree, b: int, node: int, floor: float, value_scale: float, maxvisit_init: float) -> np.ndarray:
    """The transform written out in NumPy for batch row ``b``, from the tree's arrays."""
    visits = np.asarray(tree.children_visits[b])
    q_all = np.asarray(tree.children_rewards[b]) + np.asarray(tree.children_discounts[b]) * np.asarray(tree.children_values[b])
    visited_edges = q_all[visits > 0]
    q_node = q_all[node]
    n = visits[node]
    logits = np.asarray(tree.children_prior_logits[b, node], np.float64)
    prior = np.exp(logits - logits.max())
    prior /= prior.sum()
    if n.sum() == 0:
        mixed = float(tree.raw_values[b, node])
    else:
        weighted = (prior * q_node)[n > 0].sum() / prior[n > 0].sum()
        mixed = (float(tree.raw_values[b, node]) + n.sum() * weighted) / (n.sum() + 1)
    completed = np.where(n > 0, q_node, mixed)
    if visited_edges.size and visited_edges.max() > visited_edges.min():
        lo, hi = visited_edges.min(), visited_edges.max()
        completed = (np.clip(completed, lo, hi) - lo) / max(hi - lo, floor)
    return (maxvisit_init + n.max()) * value_scale * np.clip(completed, 0.0, 1.0)


@pytest.mark.parametrize("scale", [1e-4, 1.0])
def test_matches_numpy_reference_on_random_trees(scale):
    rng = np.random.default_rng(0)
    config = PlannerConfig(search="gumbel", num_simulations=12, discount=0.9, qtransform="completed_min_max",
                           max_num_considered_actions=NUM_ARMS)
    batch = 6
    for trial in range(3):
        params = {
            "reward": jnp.asarray(scale * rng.normal(size=NUM_ARMS), jnp.float32),
            "reward2": jnp.asarray(scale * rng.normal(size=NUM_ARMS), jnp.float32),
            "logits": jnp.asarray(rng.normal(size=(NUM_ARMS, NUM_ARMS)), jnp.float32),
            "depth2": jnp.asarray(trial > 0),
            "value0": jnp.float32(scale * rng.normal()),
        }
        out = plan(params, jax.random.PRNGKey(trial), jnp.zeros((batch, 1)), model=Bandit(), config=config)
        tree = out.tree
        for b in range(batch):
            one = jax.tree_util.tree_map(lambda x: x[b], tree)
            expanded = np.flatnonzero(np.asarray(one.node_visits) > 0)
            for node in expanded:
                got = completed_min_max_qtransform(one, jnp.int32(node), floor=0.01, value_scale=0.1, maxvisit_init=50.0)
                want = reference(tree, b, int(node), 0.01, 0.1, 50.0)
                np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-6)


def test_tiny_q_gaps_stay_small_bonuses():
    """A 4-armed bandit with Q standard deviation 1e-4 and 8 simulations: mctx's default
    rescaling (per-node min-max, floor 1e-8) turns the noise into a near one-hot policy
    target; EfficientZero V2's range floor keeps it near the uniform prior."""
    rng = np.random.default_rng(1)
    maxima = {"completed_mix": [], "completed_min_max": []}
    planners = {
        name: jax.jit(functools.partial(plan, model=Bandit(), config=PlannerConfig(
            search="gumbel", num_simulations=8, qtransform=name, rescale_values=True,
            max_num_considered_actions=NUM_ARMS)))
        for name in maxima
    }
    for trial in range(16):
        params = {
            "reward": jnp.asarray(1e-4 * rng.normal(size=NUM_ARMS), jnp.float32),
            "reward2": jnp.zeros(NUM_ARMS),
            "logits": jnp.zeros((NUM_ARMS, NUM_ARMS)),
            "depth2": jnp.asarray(False),
            "value0": jnp.float32(0.0),
        }
        for name in maxima:
            out = planners[name](params, jax.random.PRNGKey(trial), jnp.zeros((1, 1)))
            maxima[name].append(float(jnp.max(out.action_weights)))
    assert np.mean(maxima["completed_mix"]) > 0.6, maxima
    assert np.mean(maxima["completed_min_max"]) < 0.3, maxima


def test_gumbel_default_is_efficientzero_v2():
    assert PlannerConfig(search="gumbel").resolved_qtransform == "completed_min_max"
    assert PlannerConfig(search="puct").resolved_qtransform == "min_max"
