"""Tests of the planner (dreamer/planner.py) on known models.

The known models are tabular, deterministic MDPs written as JAX true simulators that
satisfy the WorldModel contract: the state is a table row, ``params`` holds the tables.
Two tasks share one table (disjoint state sets), so one compiled search covers both:

* a chain ``D.....G``: goal ``G`` on the right (reward 1, terminal), and a distractor
  ``D`` on the left end that pays 1/8 for every step spent bumping into the left wall.
  With discount 0.9 the best action is "left" in the four cells nearest ``D`` and
  "right" in the two nearest ``G``;
* a 5 x 5 grid maze with walls, goal reward 1 and terminal goal (``discount = 0``).

Exact values come from value iteration in NumPy. Compiles are the slow part on CPU
(a pUCT search takes several seconds to compile, half of it mctx's Dirichlet sampler), so all
searches of one kind go through one cached jitted function with fixed shapes, and the
trace counter of that function doubles as the compile-once check.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dreamer import PlannerConfig, WorldModel, make_recurrent_fn, min_max_qtransform, plan
from dreamer.planner import Embedding
from fakes import GRID_MOVES, PrefixTableModel, TableModel, grid_tables, table_params, value_iteration

GAMMA = 0.9
NUM_STATES = 32  # table rows (the two tasks use 25, the rest are padding self-loops)
NUM_ACTIONS = len(GRID_MOVES)  # up, down, left, right
HORIZON = 2  # value-prefix reset period of the searches here (EfficientZero: 5), below the tree depth

CHAIN = ["D.....G"]
MAZE = [
    "...#G",
    ".#.#.",
    ".#...",
    ".###.",
    ".....",
]

# Static search settings shared by every search in this file (one compile per kind).
# No root noise and gumbel_scale 0 make the known-task searches deterministic.
CONFIGS = {
    "puct": PlannerConfig(search="puct", num_simulations=32, discount=GAMMA, dirichlet_fraction=0.0),
    "gumbel": PlannerConfig(search="gumbel", num_simulations=16, discount=GAMMA, gumbel_scale=0.0),
}


# ---------------------------------------------------------------------------------------
# Known models (tests/fakes.py): the two tasks in one table, as plain-reward and value-prefix models

PLAIN = TableModel(NUM_ACTIONS)
PREFIX = PrefixTableModel(NUM_ACTIONS, HORIZON)


def goal_distance(tables):
    """Steps to a goal from every state (BFS over the tables; -1 where unreachable)."""
    dist = np.full(NUM_STATES, -1)
    entering = (tables["reward"] >= 1.0).any(axis=1)
    dist[entering] = 1
    for d in range(2, NUM_STATES):
        for s in np.nonzero(dist < 0)[0]:
            if (dist[tables["next"][s]] == d - 1).any():
                dist[s] = d
    return dist


TABLES, STATE_NAMES = grid_tables({"chain": CHAIN, "maze": MAZE}, NUM_STATES, GRID_MOVES)
V_STAR, Q_STAR = value_iteration(TABLES, GAMMA)
DIST = goal_distance(TABLES)
# States to check: the tasks' non-terminal cells (not the goals, not the padding).
LIVE = np.array([s for s, (task, (r, c)) in enumerate(STATE_NAMES) if (CHAIN if task == "chain" else MAZE)[r][c] != "G"])


def known_params(value: str, prior: str = "uniform"):
    """Tables with exact values V* (``"exact"``) or zeros (``"zero"``), and a uniform
    prior or one that favours the optimal actions (logit 4, as a trained policy would)."""
    v = V_STAR if value == "exact" else None
    logits = 4.0 * np.isclose(Q_STAR, V_STAR[:, None]) if prior == "optimal" else None
    return table_params(TABLES, value=v, logits=logits)


def random_params(seed: int):
    """A random tabular model: random transitions, rewards, terminals, values and priors."""
    rng = np.random.default_rng(seed)
    params = dict(
        next=rng.integers(0, NUM_STATES, (NUM_STATES, NUM_ACTIONS)).astype(np.int32),
        reward=rng.normal(size=(NUM_STATES, NUM_ACTIONS)).astype(np.float32),
        discount=(rng.random((NUM_STATES, NUM_ACTIONS)) > 0.1).astype(np.float32),
        value=rng.normal(size=NUM_STATES).astype(np.float32),
        logits=rng.normal(size=(NUM_STATES, NUM_ACTIONS)).astype(np.float32),
    )
    return jax.tree_util.tree_map(jnp.asarray, params)


ALL_OBS = jnp.arange(NUM_STATES, dtype=jnp.int32)[:, None]  # the batch: every state once
NO_MASK = jnp.zeros((NUM_STATES, NUM_ACTIONS), jnp.float32)

# ---------------------------------------------------------------------------------------
# One jitted search per (model, search kind), with a trace counter.

TRACES: dict[tuple[str, str], int] = {}


@functools.lru_cache(maxsize=None)
def jitted_plan(model_name: str, kind: str):
    model = {"plain": PLAIN, "prefix": PREFIX}[model_name]
    config = CONFIGS[kind]

    def run(params, rng, obs, invalid_actions, temperature):
        TRACES[model_name, kind] = TRACES.get((model_name, kind), 0) + 1  # runs at trace time only
        return plan(params, rng, obs, model=model, config=config, invalid_actions=invalid_actions, temperature=temperature)

    return jax.jit(run)


def search(model_name, kind, params, seed=0, obs=ALL_OBS, mask=NO_MASK, temperature=0.0):
    fn = jitted_plan(model_name, kind)
    return jax.device_get(fn(params, jax.random.PRNGKey(seed), obs, mask, jnp.float32(temperature)))


KINDS = ["puct", "gumbel"]


# ---------------------------------------------------------------------------------------
# Known tasks: optimal actions and root values


def test_task_tables_are_as_described():
    # The chain's best actions are left (2) near D and right (3) near G; the maze needs
    # several directions; V* of a cell at distance d from the goal is GAMMA**(d - 1).
    chain = [s for s in LIVE if STATE_NAMES[s][0] == "chain"]
    left_best = [bool(np.isclose(Q_STAR[s, 2], V_STAR[s])) for s in chain]
    right_best = [bool(np.isclose(Q_STAR[s, 3], V_STAR[s])) for s in chain]
    assert left_best == [True] * 4 + [False] * 2
    assert right_best == [False] * 4 + [True] * 2
    maze = [s for s in LIVE if STATE_NAMES[s][0] == "maze"]
    np.testing.assert_allclose(V_STAR[maze], GAMMA ** (DIST[maze] - 1.0), rtol=1e-6)
    assert len({int(np.argmax(Q_STAR[s])) for s in maze}) >= 3
    assert DIST[maze].max() == 10
    assert isinstance(PLAIN, WorldModel) and isinstance(PREFIX, WorldModel)


# Root value. mctx's root value is the visit-weighted mean of the root's own value and
# every simulation's return. With exact V* at the leaves no return can exceed V*, so
# root_value <= V* + 1e-5 (a tight check: a planner that double-counts a reward, e.g.
# a value prefix not turned back into rewards, overshoots by >= 1/8 here). Below V* it
# falls short by the visits spent on worse actions, hence the stated tolerances on
# V* - root_value (rewards are in [0, 1], V* in [0.38, 1.25]):
#  * uniform prior: the search must find the best action by itself and explores the
#    others; 0.2 for both kinds (measured: pUCT 0.16, Gumbel 0.11 at 32 / 16 sims);
#  * prior on the optimal actions (a trained policy): pUCT follows the optimal path
#    only, so root_value == V* to 1e-4; Gumbel's sequential halving still spends 10 of
#    its 16 simulations on the other root actions by design (2 + 2 on two of them, 6 on
#    the runner-up), so 0.1 (measured 0.08), and
#    its root value must then equal the visit-weighted mean of the true Q* of its root
#    actions, (V* + sum_a N(a) Q*(a)) / (1 + sum_a N(a)), to 0.02 (measured 0.015).
ROOT_VALUE_TOL = {("uniform", "puct"): 0.2, ("uniform", "gumbel"): 0.2, ("optimal", "puct"): 1e-4, ("optimal", "gumbel"): 0.1}


def check_optimal(out, kind, prior, states=LIVE):
    action = out.action[states]
    np.testing.assert_allclose(Q_STAR[states, action], V_STAR[states], rtol=1e-6, err_msg="a non-optimal action was chosen")
    gap = V_STAR[states] - out.root_value[states]
    assert gap.min() >= -1e-5, f"root value above V*: {gap.min()}"
    tol = ROOT_VALUE_TOL[prior, kind]
    assert gap.max() <= tol, f"root value {gap.max():.4f} below V* (tolerance {tol})"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("prior", ["uniform", "optimal"])
def test_optimal_action_and_root_value_with_exact_values(kind, prior):
    params = known_params("exact", prior)
    out = search("plain", kind, params)
    check_optimal(out, kind, prior)
    # The network value at the root is passed through unchanged.
    np.testing.assert_allclose(out.predicted_value, V_STAR, rtol=1e-6)
    if prior == "optimal":
        n = out.tree.children_visits[:, 0]
        expected = (V_STAR + (n * Q_STAR).sum(1)) / (1 + n.sum(1))
        np.testing.assert_allclose(out.root_value[LIVE], expected[LIVE], atol=0.02)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("prior", ["uniform", "optimal"])
def test_value_prefix_model_matches_plain_reward_model(kind, prior):
    # The prefix model reports cumulative rewards and is reset every HORIZON steps; the
    # planner must recover the same per-step rewards, hence the same search.
    params = known_params("exact", prior)
    plain = search("plain", kind, params)
    prefix = search("prefix", kind, params)
    np.testing.assert_array_equal(prefix.action, plain.action)
    np.testing.assert_allclose(prefix.action_weights, plain.action_weights, atol=1e-6)
    np.testing.assert_allclose(prefix.root_value, plain.root_value, atol=1e-6)
    np.testing.assert_array_equal(prefix.tree.children_visits, plain.tree.children_visits)
    np.testing.assert_allclose(prefix.tree.children_rewards, plain.tree.children_rewards, atol=1e-6)
    # The trees are deeper than the horizon, so resets did happen.
    assert int(np.max(_depths(plain.tree))) > HORIZON
    # Optimal actions and root values hold for the prefix model too.
    check_optimal(prefix, kind, prior)


@pytest.mark.parametrize("kind", KINDS)
def test_optimal_action_with_zero_values_near_the_goal(kind):
    # With value 0 everywhere only rewards seen inside the tree guide the search. pUCT
    # (32 simulations) must solve the cells within two steps of the goal; Gumbel (16
    # simulations, 2 per root action before halving) the cells next to it. The root
    # value still never exceeds V*.
    params = known_params("zero")
    reach = {"puct": 2, "gumbel": 1}[kind]
    near = LIVE[(DIST[LIVE] >= 1) & (DIST[LIVE] <= reach)]
    assert len(near) >= 2
    one = LIVE[DIST[LIVE] == 1]
    for model_name in ("plain", "prefix"):
        out = search(model_name, kind, params)
        np.testing.assert_allclose(Q_STAR[near, out.action[near]], V_STAR[near], rtol=1e-6)
        assert (out.root_value[LIVE] <= V_STAR[LIVE] + 1e-5).all()
        # One step from the goal the chosen child's Q is exactly the goal reward.
        tree = out.tree
        q_root = tree.children_rewards[one, 0] + tree.children_discounts[one, 0] * tree.children_values[one, 0]
        np.testing.assert_allclose(q_root[np.arange(len(one)), out.action[one]], 1.0, atol=1e-6)


def _depths(tree) -> np.ndarray:
    """Depth of every node of a batched tree (parents are expanded before children)."""
    parents = np.asarray(tree.parents)
    depth = np.zeros(parents.shape, np.int64)
    for i in range(1, parents.shape[1]):
        p = parents[:, i]
        depth[:, i] = np.where(p >= 0, depth[np.arange(len(p)), np.maximum(p, 0)] + 1, 0)
    return depth


# ---------------------------------------------------------------------------------------
# Value prefix -> reward, by hand


def test_value_prefix_rewards_and_resets_by_hand():
    # A counter MDP: every action moves to the next state and pays action + 1. With
    # horizon 3 the model's prefix memory is cleared before steps 4 and 7.
    nxt = (np.arange(NUM_STATES)[:, None] + np.zeros(NUM_ACTIONS, int) + 1) % NUM_STATES
    reward = np.tile(np.arange(1.0, NUM_ACTIONS + 1.0), (NUM_STATES, 1))
    tables = dict(next=nxt.astype(np.int32), reward=reward.astype(np.float32),
                  discount=np.ones((NUM_STATES, NUM_ACTIONS), np.float32))
    params = table_params(tables)  # values 0, uniform prior
    config = PlannerConfig(discount=0.5)
    recurrent_fn = make_recurrent_fn(PrefixTableModel(NUM_ACTIONS, horizon=3), config)
    # Row 0 starts fresh. Row 1 starts at depth 2, two steps after a reset, with prefix 5
    # (in the planner's bookkeeping and in the model's state), so it resets after its 1st step.
    embedding = Embedding(
        state=(jnp.array([0, 10], jnp.int32), jnp.array([0.0, 5.0], jnp.float32)),
        prefix=jnp.array([0.0, 5.0], jnp.float32),
        depth=jnp.array([0, 2], jnp.int32),
    )
    actions = [[0, 1], [1, 1], [2, 0], [3, 3], [1, 2], [0, 0]]
    rewards, prefix, depth, model_prefix, discounts = [], [], [], [], []
    for a in actions:
        step, embedding = recurrent_fn(params, jax.random.PRNGKey(0), jnp.array(a, jnp.int32), embedding)
        rewards.append(step.reward)
        discounts.append(step.discount)
        prefix.append(embedding.prefix)
        depth.append(embedding.depth)
        model_prefix.append(embedding.state[1])
    rewards, prefix, depth, model_prefix = map(np.asarray, (rewards, prefix, depth, model_prefix))
    # Row 0, per-step rewards 1 2 3 4 2 1; prefixes 1 3 6 | 4 6 7; segments start at depths 1, 4, 7.
    np.testing.assert_allclose(rewards[:, 0], [1, 2, 3, 4, 2, 1])
    np.testing.assert_allclose(prefix[:, 0], [1, 3, 6, 4, 6, 7])
    np.testing.assert_array_equal(depth[:, 0], [1, 2, 3, 4, 5, 6])
    np.testing.assert_allclose(model_prefix[:, 0], [1, 3, 6, 4, 6, 7])
    # Row 1, per-step rewards 2 2 1 4 3 1; prefixes 7 | 2 3 7 | 3 4.
    np.testing.assert_allclose(rewards[:, 1], [2, 2, 1, 4, 3, 1])
    np.testing.assert_allclose(prefix[:, 1], [7, 2, 3, 7, 3, 4])
    np.testing.assert_array_equal(depth[:, 1], [3, 4, 5, 6, 7, 8])
    np.testing.assert_allclose(model_prefix[:, 1], [7, 2, 3, 7, 3, 4])
    np.testing.assert_allclose(np.asarray(discounts), 0.5)
    np.testing.assert_array_equal(embedding.state[0], [6, 16])

    # A plain-reward model passes rewards through and never touches the bookkeeping.
    plain_fn = make_recurrent_fn(PLAIN, config)
    emb = Embedding(jnp.array([0, 10], jnp.int32), jnp.zeros(2), jnp.zeros(2, jnp.int32))
    for a in actions:
        step, emb = plain_fn(params, jax.random.PRNGKey(0), jnp.array(a, jnp.int32), emb)
        np.testing.assert_allclose(step.reward, np.array(a) + 1.0)
    np.testing.assert_array_equal(emb.depth, [6, 6])
    np.testing.assert_allclose(emb.prefix, np.array(actions[-1]) + 1.0)  # a plain model's last reward


# ---------------------------------------------------------------------------------------
# min_max_qtransform against a NumPy reference


def min_max_reference(tree, node: int, floor: float) -> np.ndarray:
    """The docstring's definition, for one unbatched tree of NumPy arrays."""
    q_all = tree.children_rewards + tree.children_discounts * tree.children_values
    visited_all = tree.children_visits > 0
    if visited_all.any():
        q_min, q_max = q_all[visited_all].min(), q_all[visited_all].max()
    else:
        q_min = q_max = 0.0
    q, visited = q_all[node], visited_all[node]
    fill = q[visited].mean() if visited.any() else tree.node_values[node]
    q = np.where(visited, q, fill)
    return np.clip((q - q_min) / max(q_max - q_min, floor), 0.0, 1.0)


@jax.jit
def _qtransform_all_nodes(tree, floor):
    """``min_max_qtransform`` at every node of every tree of a batch: ``[B, N, A]``."""
    nodes = jnp.arange(tree.node_values.shape[1])
    per_tree = lambda t: jax.vmap(lambda i: min_max_qtransform(t, i, floor=floor))(nodes)  # noqa: E731
    return jax.vmap(per_tree)(tree)


def test_min_max_qtransform_matches_numpy_reference():
    # Trees from real searches over random models; rewards and values scaled so that the
    # floor is inactive (x1, x30) or binding (x0.001). Every node of every tree is checked.
    checked = 0
    for seed, scale in [(0, 1.0), (1, 1e-3), (2, 30.0)]:
        params = random_params(seed)
        params = dict(params, reward=params["reward"] * scale, value=params["value"] * scale)
        for kind in KINDS:
            tree = search("plain", kind, params, seed=seed, temperature=1.0).tree
            for floor in (0.01, 1.0):
                got = np.asarray(_qtransform_all_nodes(tree, jnp.float32(floor)))
                want = np.zeros_like(got)
                for b in range(NUM_STATES):
                    unbatched = jax.tree_util.tree_map(lambda x: np.asarray(x)[b], tree)
                    for node in range(got.shape[1]):
                        want[b, node] = min_max_reference(unbatched, node, floor)
                np.testing.assert_allclose(got, want, atol=1e-5, err_msg=f"seed {seed} scale {scale} {kind} floor {floor}")
                checked += want.shape[0] * want.shape[1]
    assert checked > 5000
    # Trees contain unvisited nodes, nodes with some and with all children visited.
    visits = np.asarray(tree.children_visits)
    assert (visits > 0).any(-1).all(-1).sum() < NUM_STATES and ((visits > 0).sum(-1) >= 2).any()

    # A root-only tree: no visited edge anywhere, every child scored from the root value.
    empty = jax.tree_util.tree_map(lambda x: jnp.asarray(x[0]), tree)
    empty = empty.replace(children_visits=jnp.zeros_like(empty.children_visits), node_values=empty.node_values.at[0].set(0.004))
    for floor in (0.01, 1.0):
        expected = np.full(NUM_ACTIONS, min(0.004 / floor, 1.0))
        np.testing.assert_allclose(min_max_qtransform(empty, 0, floor=floor), expected, rtol=1e-5)


# ---------------------------------------------------------------------------------------
# Masks, compile-once, vmap


def random_mask(rng: np.random.Generator) -> np.ndarray:
    """Random root masks with at least one valid action per row (some rows just one)."""
    mask = rng.random((NUM_STATES, NUM_ACTIONS)) < 0.5
    mask[np.arange(NUM_STATES), rng.integers(0, NUM_ACTIONS, NUM_STATES)] = False
    only = rng.integers(0, NUM_ACTIONS, 4)
    mask[:4] = True
    mask[np.arange(4), only] = False
    return mask


@pytest.mark.parametrize("kind", KINDS)
def test_masked_actions_are_never_chosen(kind):
    rng = np.random.default_rng(0)
    for seed in range(12):
        mask = random_mask(rng)
        params = random_params(100 + seed)
        obs = jnp.asarray(rng.integers(0, NUM_STATES, (NUM_STATES, 1)), jnp.int32)
        out = search("plain", kind, params, seed=seed, obs=obs, mask=jnp.asarray(mask, jnp.float32), temperature=1.0)
        assert not mask[np.arange(NUM_STATES), out.action].any(), f"seed {seed}: a masked action was chosen"
        assert (out.action_weights[mask] == 0).all()
        np.testing.assert_allclose(out.action_weights.sum(-1), 1.0, rtol=1e-5)
        assert (out.tree.children_visits[:, 0][mask] == 0).all()
        # Rows with one valid action must take it.
        np.testing.assert_array_equal(out.action[:4], np.argmin(mask[:4], axis=1))


def test_jitted_plan_compiles_once_for_repeated_calls():
    fn = jitted_plan("plain", "gumbel")
    search("plain", "gumbel", known_params("exact"))  # compiled before or now
    traces = TRACES["plain", "gumbel"]
    rng = np.random.default_rng(1)
    for seed in range(4):
        obs = jnp.asarray(rng.integers(0, NUM_STATES, (NUM_STATES, 1)), jnp.int32)
        mask = jnp.asarray(random_mask(rng), jnp.float32)
        search("plain", "gumbel", random_params(seed), seed=seed, obs=obs, mask=mask, temperature=0.5 * seed)
    assert TRACES["plain", "gumbel"] == traces == 1
    assert fn._cache_size() == 1


def test_plan_under_vmap_over_params_and_rng():
    # Three different models (params with a leading axis), one key each, in-batch obs.
    kind = "gumbel"
    stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *[random_params(s) for s in (7, 8, 9)])
    keys = jax.random.split(jax.random.PRNGKey(3), 3)
    obs = jnp.stack([ALL_OBS, ALL_OBS[::-1], (ALL_OBS + 5) % NUM_STATES])

    def one(params, key, o):
        return plan(params, key, o, model=PLAIN, config=CONFIGS[kind], invalid_actions=NO_MASK, temperature=0.0)

    batched = jax.device_get(jax.jit(jax.vmap(one))(stacked, keys, obs))
    assert batched.action.shape == (3, NUM_STATES)
    fn = jitted_plan("plain", kind)
    for i in range(3):
        params_i = jax.tree_util.tree_map(lambda x: x[i], stacked)
        single = jax.device_get(fn(params_i, keys[i], obs[i], NO_MASK, jnp.float32(0.0)))
        np.testing.assert_array_equal(batched.action[i], single.action)
        np.testing.assert_allclose(batched.action_weights[i], single.action_weights, atol=1e-5)
        np.testing.assert_allclose(batched.root_value[i], single.root_value, atol=1e-5)


# ---------------------------------------------------------------------------------------
# Bad input


def test_bad_input_raises_value_error_naming_expected_and_given():
    params = known_params("exact")
    key = jax.random.PRNGKey(0)
    cfg = CONFIGS["gumbel"]

    with pytest.raises(ValueError, match=r"observation shape: expected \[B, 1\], got \[32, 2\]"):
        plan(params, key, jnp.zeros((NUM_STATES, 2), jnp.int32), model=PLAIN, config=cfg)
    with pytest.raises(ValueError, match=r"observation shape: expected \[B, 1\], got \[1\]"):
        plan(params, key, jnp.zeros((1,), jnp.int32), model=PLAIN, config=cfg)
    with pytest.raises(ValueError, match=r"observation dtype: expected int32, got float32"):
        plan(params, key, ALL_OBS.astype(jnp.float32), model=PLAIN, config=cfg)
    with pytest.raises(ValueError, match=r"num_simulations must be an integer >= 0, got -1"):
        PlannerConfig(num_simulations=-1)
    with pytest.raises(ValueError, match=r"search must be one of \('puct', 'gumbel'\), got 'foo'"):
        PlannerConfig(search="foo")
    with pytest.raises(ValueError, match=r"invalid_actions shape: expected \[B, A\] = \[32, 4\].*got \[32, 3\]"):
        plan(params, key, ALL_OBS, model=PLAIN, config=cfg, invalid_actions=jnp.zeros((NUM_STATES, 3)))
    with pytest.raises(ValueError, match=r"invalid_actions shape: expected \[B, A\] = \[32, 4\].*got \[31, 4\]"):
        plan(params, key, ALL_OBS, model=PLAIN, config=cfg, invalid_actions=jnp.zeros((NUM_STATES - 1, 4)))
    all_masked = np.zeros((NUM_STATES, NUM_ACTIONS), bool)
    all_masked[[3, 17]] = True
    with pytest.raises(ValueError, match=r"forbids every action in batch row\(s\) \[3, 17\]"):
        plan(params, key, ALL_OBS, model=PLAIN, config=cfg, invalid_actions=all_masked)
    with pytest.raises(ValueError, match=r"config must be a dreamer.PlannerConfig, got dict"):
        plan(params, key, ALL_OBS, model=PLAIN, config={"search": "puct"})


def test_integer_valued_config_numbers_are_accepted():
    # PlannerConfig(dirichlet_fraction=0) is the natural way to switch root noise off;
    # mctx asserts Python floats for it (regression: a chex AssertionError at trace time).
    obs = jax.ShapeDtypeStruct((NUM_STATES, 1), jnp.int32)
    for config in (
        PlannerConfig(search="puct", num_simulations=2, dirichlet_fraction=0, dirichlet_alpha=1, pb_c_init=1, pb_c_base=20000),
        PlannerConfig(search="gumbel", num_simulations=2, gumbel_scale=0),
    ):
        traced = functools.partial(plan, model=PLAIN, config=config)
        out = jax.eval_shape(traced, known_params("exact"), jax.random.PRNGKey(0), obs)
        assert out.action.shape == (NUM_STATES,)


@pytest.mark.parametrize("kind", ["puct", "gumbel"])
def test_no_search_plays_and_targets_the_prior(kind):
    """num_simulations=0: no tree; the policy target is the prior (masked), the root value
    the network's, and the greedy action the prior's argmax."""
    logits = np.asarray(jax.random.normal(jax.random.PRNGKey(3), (NUM_STATES, NUM_ACTIONS)))
    params = table_params(TABLES, value=np.linspace(-1.0, 1.0, NUM_STATES), logits=logits)
    obs = jnp.arange(6, dtype=jnp.int32)[:, None]
    config = PlannerConfig(search=kind, num_simulations=0, discount=GAMMA, gumbel_scale=0.0, dirichlet_fraction=0.0)
    invalid = jnp.zeros((6, NUM_ACTIONS)).at[:, 0].set(1.0)
    out = jax.jit(lambda p, k, o: plan(p, k, o, model=PLAIN, config=config, invalid_actions=invalid,
                                       temperature=0.0))(params, jax.random.PRNGKey(0), obs)
    initial = PLAIN.initial_inference(params, obs)
    prior = jax.nn.softmax(jnp.where(invalid > 0, -jnp.inf, initial.policy_logits), -1)
    assert out.tree is None
    np.testing.assert_allclose(out.action_weights, prior, rtol=1e-6)
    np.testing.assert_allclose(out.root_value, initial.value, rtol=1e-6)
    np.testing.assert_array_equal(out.action, np.argmax(np.asarray(prior), -1))
    assert (np.asarray(out.action) != 0).all()
