"""Known models and fake envs shared by the tests (imported as ``fakes``; ``tests/conftest.py``
puts this folder on ``sys.path``).

* Tabular MDPs built from ASCII grids (:func:`grid_tables`) with exact values
  (:func:`value_iteration`).
* :class:`TableModel` / :class:`PrefixTableModel`: such an MDP as a planning
  :class:`~dreamer.world_model.WorldModel` (a true simulator whose ``params`` are the
  tables), reporting per-step rewards or EfficientZero's value prefix.
* :class:`FakeEnvs`: the same kind of MDP as a :class:`~agents.envs.base.VectorEnv`
  (deterministic, tiny, no gymnasium), and :func:`make_fake_envs`, a ``make_envs`` for
  :func:`agents.loop.train`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from agents.envs.base import EnvSpec, StepInfo
from dreamer import InitialOutput, RecurrentOutput

# ---------------------------------------------------------------------------------------
# Tabular MDPs from ASCII grids

UP, DOWN, LEFT, RIGHT, STAY = (-1, 0), (1, 0), (0, -1), (0, 1), (0, 0)
GRID_MOVES = (UP, DOWN, LEFT, RIGHT)
GOAL_REWARD = 1.0
DISTRACTOR_REWARD = 0.125


def grid_tables(tasks, num_states: int | None = None, moves=GRID_MOVES):
    """One deterministic tabular MDP holding every grid of ``tasks`` (disjoint state sets).

    ``tasks``: ``{name: rows}``; a row is a string of cells: ``#`` a wall, ``G`` a goal,
    ``D`` a distractor, anything else a free cell. Each non-wall cell is a state,
    numbered in reading order, task after task. Action ``a`` moves by ``moves[a]``;
    walls and grid edges leave the state unchanged. Entering a goal pays
    ``GOAL_REWARD`` and ends the episode (discount 0); a goal is absorbing and terminal.
    Bumping into a wall or edge from ``D`` pays ``DISTRACTOR_REWARD``. Rows past the
    cells, up to ``num_states``, are padding self-loops.

    Returns ``(tables, names)``: ``tables`` is ``{"next" [S, A] int32, "reward" [S, A]
    float32, "discount" [S, A] float32}`` in NumPy, ``names[s] = (task, (row, col))``.
    """
    names: list[tuple[str, tuple[int, int]]] = []
    index = {}
    for task, rows in tasks.items():
        for r, line in enumerate(rows):
            for c, ch in enumerate(line):
                if ch != "#":
                    index[task, r, c] = len(names)
                    names.append((task, (r, c)))
    num_states = len(names) if num_states is None else num_states
    if num_states < len(names):
        raise ValueError(f"num_states ({num_states}) is below the {len(names)} cells of the grids")
    num_actions = len(moves)
    nxt = np.tile(np.arange(num_states)[:, None], (1, num_actions)).astype(np.int32)
    reward = np.zeros((num_states, num_actions), np.float32)
    discount = np.ones((num_states, num_actions), np.float32)
    for s, (task, (r, c)) in enumerate(names):
        rows = tasks[task]
        if rows[r][c] == "G":  # absorbing terminal
            discount[s] = 0.0
            continue
        for a, (dr, dc) in enumerate(moves):
            t = index.get((task, r + dr, c + dc), s)  # walls and edges: stay
            nxt[s, a] = t
            tr, tc = names[t][1]
            if rows[tr][tc] == "G":
                reward[s, a], discount[s, a] = GOAL_REWARD, 0.0
            elif t == s and rows[r][c] == "D":
                reward[s, a] = DISTRACTOR_REWARD
    return dict(next=nxt, reward=reward, discount=discount), names


def value_iteration(tables, gamma: float, iters: int = 400):
    """``(V* [S], Q* [S, A])`` of a tabular MDP, in float64."""
    v = np.zeros(tables["next"].shape[0], np.float64)
    for _ in range(iters):
        q = tables["reward"] + gamma * tables["discount"] * v[tables["next"]]
        v = q.max(axis=1)
    return v, q


# ---------------------------------------------------------------------------------------
# Known models


class TableModel:
    """A deterministic tabular MDP as a WorldModel. Observation ``[B, 1]`` int32 = state id.

    ``params``: ``next [S, A]`` int32, ``reward [S, A]``, ``discount [S, A]``,
    ``value [S]``, ``logits [S, A]``. The state is the ``[B]`` state ids.
    """

    observation_shape = (1,)
    observation_dtype = jnp.int32
    value_prefix = False

    def __init__(self, num_actions: int):
        self.num_actions = num_actions

    def initial_inference(self, params, obs):
        s = obs[:, 0]
        return InitialOutput(s, params["value"][s], params["logits"][s])

    def recurrent_inference(self, params, state, action):
        nxt = params["next"][state, action]
        return RecurrentOutput(
            nxt,
            params["reward"][state, action],
            params["value"][nxt],
            params["logits"][nxt],
            params["discount"][state, action],
        )


class PrefixTableModel(TableModel):
    """The same MDP reporting EfficientZero's value prefix instead of the reward.

    The state is ``(state ids, running prefix)``; ``reward`` is the sum of rewards since
    the last :meth:`reset_value_prefix`.
    """

    value_prefix = True

    def __init__(self, num_actions: int, horizon: int):
        super().__init__(num_actions)
        self.value_prefix_horizon = horizon

    def initial_inference(self, params, obs):
        out = super().initial_inference(params, obs)
        return out._replace(state=(out.state, jnp.zeros(obs.shape[:1], jnp.float32)))

    def recurrent_inference(self, params, state, action):
        ids, prefix = state
        out = super().recurrent_inference(params, ids, action)
        prefix = prefix + out.reward
        return out._replace(state=(out.state, prefix), reward=prefix)

    def reset_value_prefix(self, state):
        ids, prefix = state
        return ids, jnp.zeros_like(prefix)


def table_params(tables, value=None, logits=None):
    """A :class:`TableModel`'s params: the tables, values (default 0) and prior logits
    (default uniform), as JAX arrays."""
    num_states, num_actions = tables["next"].shape
    value = np.zeros(num_states) if value is None else value
    logits = np.zeros((num_states, num_actions)) if logits is None else logits
    params = dict(tables, value=np.asarray(value, np.float32), logits=np.asarray(logits, np.float32))
    return jax.tree_util.tree_map(jnp.asarray, params)


# ---------------------------------------------------------------------------------------
# A fake vector env

CORRIDOR = ["S..G"]  # start on the left, the goal three steps to the right
CORRIDOR_MOVES = (LEFT, STAY, RIGHT)
CORRIDOR_CAP = 6  # a uniformly random policy reaches the goal in about one episode in five


class FakeEnvs:
    """``num_envs`` copies of a tabular grid MDP (:func:`grid_tables`) as a host
    :class:`~agents.envs.base.VectorEnv`, for loop tests without gymnasium.

    Deterministic: every episode starts at the ``S`` cell (state 0 if none) and the
    seeds are ignored. A frame is the one-hot state ``[S]`` float32. Entering the goal
    terminates the episode; reaching ``max_episode_steps`` without it truncates it.
    Same-step autoreset: the frame returned for an env whose episode just ended is the
    start frame, with the ended step's reward and flags. Every episode is a whole game:
    ``game_end = terminated | truncated`` and ``game_return`` is its summed reward.

    The default is a corridor ``S..G`` with actions left / stay / right and a cap of 6
    steps: going right always terminates after 3 steps, staying always truncates after 6.
    """

    functional = None  # host only

    def __init__(self, num_envs: int, grid=CORRIDOR, moves=CORRIDOR_MOVES, max_episode_steps: int = CORRIDOR_CAP):
        if num_envs < 1 or max_episode_steps < 1:
            raise ValueError(f"need num_envs >= 1 and max_episode_steps >= 1, got {num_envs}, {max_episode_steps}")
        self.tables, names = grid_tables({"grid": grid}, moves=moves)
        starts = [s for s, (_, (r, c)) in enumerate(names) if grid[r][c] == "S"]
        self.start = starts[0] if starts else 0
        self.num_envs = num_envs
        self.max_episode_steps = max_episode_steps
        num_states = self.tables["next"].shape[0]
        self.spec = EnvSpec(num_actions=len(moves), frame_shape=(num_states,), frame_dtype=np.float32)
        self.state = np.full(num_envs, self.start, np.int64)
        self.steps = np.zeros(num_envs, np.int64)  # steps into the current episode
        self.returns = np.zeros(num_envs, np.float64)  # reward so far in the current episode
        self.closed = False

    def frames(self) -> np.ndarray:
        return np.eye(self.spec.frame_shape[0], dtype=np.float32)[self.state]

    def reset(self, seed: int | None = None) -> np.ndarray:
        self.state[:] = self.start
        self.steps[:] = 0
        self.returns[:] = 0.0
        return self.frames()

    def observation(self) -> np.ndarray:
        return self.frames()

    def step(self, actions):
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs,) or not np.all((actions >= 0) & (actions < self.spec.num_actions)):
            raise ValueError(f"expected {self.num_envs} actions in [0, {self.spec.num_actions}), got {actions!r}")
        actions = actions.astype(np.int64)
        reward = self.tables["reward"][self.state, actions].astype(np.float32)
        terminated = self.tables["discount"][self.state, actions] == 0.0
        self.state = self.tables["next"][self.state, actions].astype(np.int64)
        self.steps += 1
        self.returns += reward
        truncated = ~terminated & (self.steps >= self.max_episode_steps)
        game_end = terminated | truncated
        game_return = np.where(game_end, self.returns, 0.0)
        self.state[game_end] = self.start
        self.steps[game_end] = 0
        self.returns[game_end] = 0.0
        return self.frames(), reward, terminated, truncated, StepInfo(game_end, game_return)

    def close(self) -> None:
        self.closed = True


def make_fake_envs(env_cfg, mode: str, seed: int) -> FakeEnvs:
    """A ``make_envs`` for :func:`agents.loop.train`: the default corridor, sized by
    ``env_cfg`` (``num_envs`` / ``num_eval_envs``; the mode's episode cap if set)."""
    evaluation = mode == "eval"
    num_envs = env_cfg.num_eval_envs if evaluation else env_cfg.num_envs
    cap = env_cfg.eval_max_episode_steps if evaluation else env_cfg.max_episode_steps
    return FakeEnvs(num_envs, max_episode_steps=CORRIDOR_CAP if cap is None else cap)


class FakeFunctional:
    """The corridor of :class:`FakeEnvs` as a pure JAX :class:`~agents.envs.base.FunctionalEnv`
    (the same tables, caps and autoreset), for tests of the loop's fused path."""

    def __init__(self, num_envs: int, grid=CORRIDOR, moves=CORRIDOR_MOVES, max_episode_steps: int = CORRIDOR_CAP):
        host = FakeEnvs(num_envs, grid, moves, max_episode_steps)
        self.spec, self.num_envs, self.start, self.cap = host.spec, num_envs, host.start, max_episode_steps
        self.tables = {k: np.asarray(v) for k, v in host.tables.items()}

    def _frames(self, state):
        import jax

        return jax.nn.one_hot(state, self.spec.frame_shape[0], dtype=np.float32)

    def init(self, key):
        import jax.numpy as jnp

        state = (jnp.full(self.num_envs, self.start, jnp.int32), jnp.zeros(self.num_envs, jnp.int32),
                 jnp.zeros(self.num_envs, jnp.float32))
        return state, self._frames(state[0])

    def step(self, key, env_state, actions):
        import jax.numpy as jnp

        from agents.envs.base import FunctionalStep

        pos, steps, returns = env_state
        reward = jnp.asarray(self.tables["reward"])[pos, actions].astype(jnp.float32)
        terminated = jnp.asarray(self.tables["discount"])[pos, actions] == 0.0
        pos = jnp.asarray(self.tables["next"])[pos, actions].astype(jnp.int32)
        steps, returns = steps + 1, returns + reward
        truncated = ~terminated & (steps >= self.cap)
        end = terminated | truncated
        out = FunctionalStep(self._frames(jnp.where(end, self.start, pos)), reward, terminated, truncated, end,
                             jnp.where(end, returns, 0.0))
        state = (jnp.where(end, self.start, pos), jnp.where(end, 0, steps), jnp.where(end, 0.0, returns))
        return state, out

    def observation(self, env_state):
        return self._frames(env_state[0])


class FakeFusedEnvs(FakeEnvs):
    """:class:`FakeEnvs` whose ``functional`` is :class:`FakeFunctional`: the loop fuses it."""

    @property
    def functional(self):
        return FakeFunctional(self.num_envs, max_episode_steps=self.max_episode_steps)


def make_fake_fused_envs(env_cfg, mode: str, seed: int) -> FakeFusedEnvs:
    return FakeFusedEnvs(env_cfg.num_eval_envs if mode == "eval" else env_cfg.num_envs)
