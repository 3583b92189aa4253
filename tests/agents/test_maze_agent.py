"""The maze agent (agents/maze): planning in a known model reaches the goal by shortest paths."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents.maze.agent import MOVES, MazeModel, all_starts, make_mazes, parse_maze, random_maze, run_episodes, summarize
from dreamer import PlannerConfig

# The goal is 5 steps below-left of (2, 3), but the walls-blind Manhattan heuristic
# says "up" there (2 steps from the goal as the crow flies): a one-step greedy agent
# gets it wrong, the search must look past the wall.
TRAP = [
    "#######",
    "#G#...#",
    "#.#.#.#",
    "#...#.#",
    "#######",
]
DISCOUNT = 0.97


@pytest.fixture(scope="module")
def mazes():
    rng = np.random.default_rng(0)
    # The trap plus three random mazes of the same 5 x 7 size, searched in one batch.
    return make_mazes([parse_maze(TRAP)] + [random_maze(2, 3, rng) for _ in range(3)])


def test_heuristic_alone_points_the_wrong_way(mazes):
    model = MazeModel(DISCOUNT, "manhattan")

    @jax.jit
    def one_step_q(mazes, state):  # Q of the 4 moves from one state, by the heuristic
        states = jnp.repeat(state[None], 4, axis=0)
        nxt, reward, discount = model.step(mazes, states, jnp.arange(4))
        q = reward + DISCOUNT * discount * model.leaf_value(mazes, nxt)
        return jnp.where(model.blocked(mazes, states)[0], -1.0, q)

    q = np.asarray(one_step_q(mazes, jnp.array([0, 2, 3], jnp.int32)))
    assert int(np.argmax(q)) == 0  # "up"
    assert int(mazes.distance[0, 1, 3]) > int(mazes.distance[0, 2, 3])  # ... which leads away from the goal


@pytest.mark.parametrize("search,simulations", [("puct", 64), ("gumbel", 32)])
def test_agent_reaches_goal_along_shortest_paths(mazes, search, simulations):
    config = PlannerConfig(
        search=search, num_simulations=simulations, discount=DISCOUNT, dirichlet_fraction=0.0, gumbel_scale=0.0
    )
    starts = all_starts(mazes)
    assert len(starts) > 40 and (starts[:, 0] == 0).sum() == 10
    result = run_episodes(mazes, starts, model=MazeModel(DISCOUNT, "manhattan"), config=config, max_steps=12)
    stats = summarize(result)
    assert stats["success_rate"] == 1.0
    np.testing.assert_array_equal(result.steps, result.shortest)
    assert stats["shortest_path_rate"] == 1.0

    # The paths are real: one legal move per step towards the goal, then resting there.
    path = result.path  # [T + 1, B, 3]
    walls, goal, dist = (np.asarray(x) for x in mazes)
    moves = np.diff(path[:, :, 1:], axis=0)
    assert (np.abs(moves).sum(-1) <= 1).all()
    assert (path[..., 0] == starts[None, :, 0]).all()
    assert not walls[path[..., 0], path[..., 1], path[..., 2]].any()
    d = dist[path[..., 0], path[..., 1], path[..., 2]]
    expected = np.maximum(result.shortest[None] - np.arange(len(path))[:, None], 0)
    np.testing.assert_array_equal(d, expected)
    np.testing.assert_array_equal(path[-1, :, 1:], goal[starts[:, 0]])
    assert MOVES.shape == (4, 2)
