"""An AlphaZero-style maze agent: tree search in a KNOWN model, no learning.

The world model is the maze itself, a deterministic grid simulator written in JAX that
satisfies the WorldModel contract, so :func:`dreamer.plan` searches it directly:

* observation and state: ``[maze index, row, col]`` (int32); ``params`` is a batch of
  mazes of one size (:class:`Mazes`), so one search covers several mazes at once;
* actions: up, down, left, right; a move into a wall or off the grid stays put;
* reward 1 for entering the goal, and the goal is terminal (``discount = 0``);
* the value the search starts from at a leaf: ``"manhattan"`` (discount ** (d - 1)
  for the Manhattan distance d to the goal, which ignores walls and so is optimistic),
  ``"exact"`` (the same with the true shortest-path distance) or ``"zero"``;
* the prior: uniform over the legal moves (moves into walls get a logit of -30, as
  AlphaZero masks illegal moves at every node of its tree).

At the root, moves into walls are masked (``invalid_actions``). Episodes run in one
jitted ``lax.scan`` over steps, the search inside it traced once, for a batch of
(maze, start) pairs; the result is compared with the shortest paths.

Run ``python -m agents.maze.agent`` for a short report.
"""

from __future__ import annotations

import argparse
import time
from collections import deque
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from dreamer import InitialOutput, PlannerConfig, RecurrentOutput, plan

MOVES = np.array([[-1, 0], [1, 0], [0, -1], [0, 1]], np.int32)  # up, down, left, right
VALUES = ("manhattan", "exact", "zero")


class Mazes(NamedTuple):
    """A batch of ``M`` mazes of one size ``H x W``: the model's params."""

    walls: jnp.ndarray  # [M, H, W] bool
    goal: jnp.ndarray  # [M, 2] int32 (row, col)
    distance: jnp.ndarray  # [M, H, W] int32 shortest-path steps to the goal, -1 if none


# ---------------------------------------------------------------------------------------
# Mazes (NumPy, built once)


def shortest_distances(walls: np.ndarray, goal: tuple[int, int]) -> np.ndarray:
    """Breadth-first search from the goal: steps to the goal from every cell (-1: none)."""
    h, w = walls.shape
    dist = np.full((h, w), -1, np.int32)
    dist[goal] = 0
    queue = deque([goal])
    while queue:
        r, c = queue.popleft()
        for dr, dc in MOVES:
            nr, nc = r + dr, c + dc
            if 0 <= nr < h and 0 <= nc < w and not walls[nr, nc] and dist[nr, nc] < 0:
                dist[nr, nc] = dist[r, c] + 1
                queue.append((nr, nc))
    return dist


def parse_maze(rows: list[str]) -> tuple[np.ndarray, tuple[int, int]]:
    """ASCII maze: ``#`` wall, ``G`` goal, anything else free. Returns (walls, goal)."""
    walls = np.array([[ch == "#" for ch in row] for row in rows], bool)
    (goal,) = [(r, c) for r, row in enumerate(rows) for c, ch in enumerate(row) if ch == "G"]
    return walls, goal


def random_maze(height: int, width: int, rng: np.random.Generator, extra_openings: int = 2):
    """A random maze on a ``(2 height + 1) x (2 width + 1)`` grid (depth-first carving, then a
    few extra openings so that some cells have more than one route). Goal at a random room."""
    grid = np.ones((2 * height + 1, 2 * width + 1), bool)
    start = (int(rng.integers(height)), int(rng.integers(width)))
    seen, stack = {start}, [start]
    grid[2 * start[0] + 1, 2 * start[1] + 1] = False
    while stack:
        r, c = stack[-1]
        options = [(r + dr, c + dc) for dr, dc in MOVES if 0 <= r + dr < height and 0 <= c + dc < width]
        options = [o for o in options if o not in seen]
        if not options:
            stack.pop()
            continue
        nr, nc = options[int(rng.integers(len(options)))]
        grid[r + nr + 1, c + nc + 1] = False  # the wall between the two rooms
        grid[2 * nr + 1, 2 * nc + 1] = False
        seen.add((nr, nc))
        stack.append((nr, nc))
    inner = [(r, c) for r in range(1, 2 * height) for c in range(1, 2 * width) if grid[r, c] and (r + c) % 2 == 1]
    for i in rng.permutation(len(inner))[:extra_openings]:
        grid[inner[i]] = False
    goal = (2 * int(rng.integers(height)) + 1, 2 * int(rng.integers(width)) + 1)
    return grid, goal


def make_mazes(mazes: list[tuple[np.ndarray, tuple[int, int]]]) -> Mazes:
    walls = np.stack([w for w, _ in mazes])
    goal = np.array([g for _, g in mazes], np.int32)
    distance = np.stack([shortest_distances(w, g) for w, g in mazes])
    return Mazes(jnp.asarray(walls), jnp.asarray(goal), jnp.asarray(distance))


def all_starts(mazes: Mazes) -> np.ndarray:
    """``[N, 3]`` every (maze, row, col) from which the goal is reachable, goal excluded."""
    m, r, c = np.nonzero(np.asarray(mazes.distance) > 0)
    return np.stack([m, r, c], axis=1).astype(np.int32)


# ---------------------------------------------------------------------------------------
# The known model


class MazeModel:
    """The maze as a :class:`dreamer.WorldModel` (params: :class:`Mazes`)."""

    num_actions = 4
    observation_shape = (3,)
    observation_dtype = jnp.int32

    def __init__(self, discount: float = 0.97, value: str = "manhattan"):
        if value not in VALUES:
            raise ValueError(f"value must be one of {VALUES}, got {value!r}")
        self.discount = discount
        self.value = value

    # -- dynamics ------------------------------------------------------------------------
    def at_goal(self, mazes: Mazes, state: jnp.ndarray) -> jnp.ndarray:
        return jnp.all(state[:, 1:] == mazes.goal[state[:, 0]], axis=-1)

    def blocked(self, mazes: Mazes, state: jnp.ndarray) -> jnp.ndarray:
        """``[B, 4]`` True where a move would hit a wall or leave the grid."""
        _, h, w = mazes.walls.shape
        target = state[:, None, 1:] + MOVES[None]  # [B, 4, 2]
        inside = (target[..., 0] >= 0) & (target[..., 0] < h) & (target[..., 1] >= 0) & (target[..., 1] < w)
        r, c = jnp.clip(target[..., 0], 0, h - 1), jnp.clip(target[..., 1], 0, w - 1)
        return ~inside | mazes.walls[state[:, :1], r, c]

    def step(self, mazes: Mazes, state: jnp.ndarray, action: jnp.ndarray):
        """One move: (next state, reward, discount). The goal is absorbing and terminal."""
        done = self.at_goal(mazes, state)
        stay = self.blocked(mazes, state)[jnp.arange(state.shape[0]), action] | done
        moved = state.at[:, 1:].add(jnp.asarray(MOVES)[action])
        nxt = jnp.where(stay[:, None], state, moved)
        arrived = self.at_goal(mazes, nxt)
        reward = (arrived & ~done).astype(jnp.float32)
        return nxt, reward, 1.0 - arrived.astype(jnp.float32)

    # -- the leaf value and prior --------------------------------------------------------
    def leaf_value(self, mazes: Mazes, state: jnp.ndarray) -> jnp.ndarray:
        if self.value == "zero":
            return jnp.zeros(state.shape[:1], jnp.float32)
        if self.value == "exact":
            d = mazes.distance[state[:, 0], state[:, 1], state[:, 2]]
            d = jnp.where(d < 0, jnp.inf, d.astype(jnp.float32))
        else:
            d = jnp.sum(jnp.abs(state[:, 1:] - mazes.goal[state[:, 0]]), axis=-1).astype(jnp.float32)
        return jnp.where(d > 0, self.discount ** (d - 1.0), 0.0)  # 0 at the (terminal) goal

    def prior_logits(self, mazes: Mazes, state: jnp.ndarray) -> jnp.ndarray:
        """Uniform over the legal moves: AlphaZero masks illegal moves at every node, here
        by a very low logit, so that the search does not spend simulations on walls."""
        return jnp.where(self.blocked(mazes, state), -30.0, 0.0)

    # -- the WorldModel contract ---------------------------------------------------------
    def initial_inference(self, mazes: Mazes, obs: jnp.ndarray) -> InitialOutput:
        return InitialOutput(obs, self.leaf_value(mazes, obs), self.prior_logits(mazes, obs))

    def recurrent_inference(self, mazes: Mazes, state: jnp.ndarray, action: jnp.ndarray) -> RecurrentOutput:
        nxt, reward, discount = self.step(mazes, state, action)
        return RecurrentOutput(nxt, reward, self.leaf_value(mazes, nxt), self.prior_logits(mazes, nxt), discount)


# ---------------------------------------------------------------------------------------
# Episodes


class EpisodeResult(NamedTuple):
    solved: np.ndarray  # [B] bool, reached the goal within max_steps
    steps: np.ndarray  # [B] steps taken (max_steps if not solved)
    shortest: np.ndarray  # [B] shortest-path length from the start
    path: np.ndarray  # [max_steps + 1, B, 3] states visited


def make_runner(model: MazeModel, config: PlannerConfig, max_steps: int):
    """A jitted ``run(mazes, rng, starts) -> (done [B], steps [B], path [T+1, B, 3])``.

    Each step searches from every unfinished (maze, position) at once and takes the
    most visited action (pUCT, temperature 0) or the Gumbel search's choice.
    """

    def run(mazes: Mazes, rng: jnp.ndarray, starts: jnp.ndarray):
        def one_step(carry, key):
            state, done, steps = carry
            out = plan(
                mazes, key, state, model=model, config=config,
                invalid_actions=model.blocked(mazes, state), temperature=0.0,
            )  # fmt: skip
            nxt, _, _ = model.step(mazes, state, out.action)
            state = jnp.where(done[:, None], state, nxt)
            steps = steps + (~done).astype(jnp.int32)
            done = done | model.at_goal(mazes, state)
            return (state, done, steps), state

        init = (starts, model.at_goal(mazes, starts), jnp.zeros(starts.shape[:1], jnp.int32))
        (_, done, steps), path = jax.lax.scan(one_step, init, jax.random.split(rng, max_steps))
        return done, steps, jnp.concatenate([starts[None], path])

    return jax.jit(run)


def run_episodes(mazes: Mazes, starts: np.ndarray, *, model: MazeModel, config: PlannerConfig, max_steps: int, seed: int = 0):
    """Runs one episode per start and compares it with the shortest path."""
    run = make_runner(model, config, max_steps)
    done, steps, path = jax.device_get(run(mazes, jax.random.PRNGKey(seed), jnp.asarray(starts, jnp.int32)))
    shortest = np.asarray(mazes.distance)[starts[:, 0], starts[:, 1], starts[:, 2]]
    return EpisodeResult(np.asarray(done), np.asarray(steps), shortest, np.asarray(path))


def summarize(result: EpisodeResult) -> dict:
    solved = result.solved
    return {
        "episodes": int(len(solved)),
        "success_rate": float(solved.mean()),
        "shortest_path_rate": float((solved & (result.steps == result.shortest)).mean()),
        "mean_steps_solved": float(result.steps[solved].mean()) if solved.any() else float("nan"),
        "mean_shortest_solved": float(result.shortest[solved].mean()) if solved.any() else float("nan"),
        "mean_extra_steps_solved": float((result.steps - result.shortest)[solved].mean()) if solved.any() else float("nan"),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mazes", type=int, default=4, help="random mazes (all free cells are starts)")
    parser.add_argument("--rooms", type=int, default=4, help="maze size in rooms: (2 rooms + 1)^2 cells")
    parser.add_argument("--simulations", type=int, default=32)
    parser.add_argument("--search", choices=("puct", "gumbel", "both"), default="both")
    parser.add_argument("--value", choices=VALUES + ("all",), default="all")
    parser.add_argument("--discount", type=float, default=0.97)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    mazes = make_mazes([random_maze(args.rooms, args.rooms, rng) for _ in range(args.mazes)])
    starts = all_starts(mazes)
    max_steps = 2 * int(np.asarray(mazes.distance).max()) + 4
    size = np.asarray(mazes.walls).shape[1:]
    print(f"{args.mazes} mazes of {size[0]}x{size[1]} cells, {len(starts)} starts, "
          f"shortest paths up to {int(np.asarray(mazes.distance).max())} steps, episode cap {max_steps}")  # fmt: skip
    print(f"{'search':7} {'sims':>4} {'value':10} {'solved':>7} {'shortest':>9} {'extra steps':>12} {'time s':>7}")
    searches = ("puct", "gumbel") if args.search == "both" else (args.search,)
    values = VALUES if args.value == "all" else (args.value,)
    for search in searches:
        for value in values:
            config = PlannerConfig(
                search=search, num_simulations=args.simulations, discount=args.discount,
                dirichlet_fraction=0.0, gumbel_scale=0.0,
            )  # fmt: skip
            model = MazeModel(discount=args.discount, value=value)
            t0 = time.perf_counter()
            stats = summarize(run_episodes(mazes, starts, model=model, config=config, max_steps=max_steps, seed=args.seed))
            dt = time.perf_counter() - t0
            print(f"{search:7} {args.simulations:4d} {value:10} {stats['success_rate']:7.1%} "
                  f"{stats['shortest_path_rate']:9.1%} {stats['mean_extra_steps_solved']:12.2f} {dt:7.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
