"""MinAtar games as pure JAX envs, through gymnax.

Five games, ids ``MinAtar/<Game>`` (the game part is case-insensitive): Asterix,
Breakout, Freeway, Seaquest, SpaceInvaders. Frames are MinAtar's 10x10xC binary
observation (one channel per object kind), stored as ``bool``; ``frame_stack`` is 1 and
every game keeps the action set gymnax gives it (MinAtar's minimal set per game).

Two views of one implementation:

* :class:`MinAtarFunctional` (a :class:`~agents.envs.base.FunctionalEnv`): ``init``,
  ``step`` and ``observation`` are pure functions over a :class:`MinAtarState`, vmapped
  over the batch, so the training loop can compile acting, env steps and replay writes
  into one program.
* :class:`MinAtarEnvs` (a host :class:`~agents.envs.base.VectorEnv`): holds a state and
  a PRNG key and runs the functional ``step`` as one jitted call per step, returning
  NumPy arrays. ``MinAtarEnvs.functional`` is the functional view of the same batch.

Rules are gymnax's (gymnax 1.0.1) plus MinAtar's sticky actions, which gymnax's game ports
leave out and its ``StickyActionWrapper`` adds (:func:`make_gymnax`, also what the peer
baselines of ``benchmarks/peers.py`` play): with probability ``sticky_action_prob`` (0.1, as
in the MinAtar paper and the DQN results it reports) an env repeats the action it played
at the previous step instead of the chosen one. That previous action is NOOP (0) at the
first game; unlike MinAtar, the wrapper carries it over into the next game after a reset (a
sticky first step of a game replays the last game's last action). gymnax's time limit stays: 1,000 steps
per episode (2,500 for Freeway, whose original game ends there). gymnax reports its natural game-over as ``terminated`` and the time limit
as ``truncated``; Freeway never terminates, so its episodes are always truncated.
``max_episode_steps`` overrides the limit. Where both fire on one step, the step counts
as terminated only (``terminated`` and ``truncated`` are never both True).

Same-step autoreset: gymnax resets an env inside ``step`` when its episode ends, so the
frame returned for that step is the first frame of the next episode, while reward and
flags belong to the step that ended. A game is one MinAtar episode: ``game_end`` is
``terminated | truncated`` and ``game_return`` is the episode's summed reward, tracked
on device in the env state. MinAtar has no lives and its rewards are small counts, so
training and evaluation (``mode``) play by the same rules.

Randomness: a key for the whole batch; env ``i`` draws from ``fold_in(key, i)``, so an
env's games do not depend on how many envs run beside it. The host env starts from
``PRNGKey(seed)`` and splits it once per reset and per step
(``key, sub = jax.random.split(key)``; ``sub`` goes to ``init`` / ``step``), so feeding
the functional env the same keys and actions reproduces the host trajectory exactly.

gymnax is optional (the ``minatar`` extra): this module imports it only when an env is
built, and raises a one-line :class:`~agents.envs.base.EnvError` when it is missing.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import numpy as np

from agents.envs.base import ClosesOnExit, EnvError, EnvSpec, FunctionalStep, StepInfo

GAMES: tuple[str, ...] = ("Asterix", "Breakout", "Freeway", "Seaquest", "SpaceInvaders")
PREFIX = "MinAtar/"
MISSING_GYMNAX = 'MinAtar envs need gymnax: pip install -e ".[minatar]"'

_BY_KEY = {g.lower(): g for g in GAMES}


def is_minatar(env_id: Any) -> bool:
    """Whether ``env_id`` names a MinAtar env (``MinAtar/...``, prefix case-insensitive).

    True also for unknown games under the prefix, so that they reach this module and get
    its error listing the games."""
    return isinstance(env_id, str) and env_id.strip().lower().startswith(PREFIX.lower())


def game_name(env_id: str) -> str:
    """``"MinAtar/breakout"`` or ``"Breakout"`` -> ``"Breakout"``; :class:`EnvError` for
    an unknown game."""
    name = env_id.strip() if isinstance(env_id, str) else ""
    if is_minatar(name):
        name = name[len(PREFIX):]
    game = _BY_KEY.get(name.lower().replace("-", "").replace("_", ""))
    if game is None:
        known = ", ".join(PREFIX + g for g in GAMES)
        raise EnvError(f"unknown MinAtar game {env_id!r}; MinAtar games: {known}")
    return game


def _gymnax():
    """The gymnax module, or a one-line :class:`EnvError` naming the extra."""
    try:
        import six  # noqa: F401  (gymnax 1.0.1 imports six.moves at import time)
        import gymnax
    except ImportError:
        raise EnvError(MISSING_GYMNAX) from None
    return gymnax


def make_gymnax(game: str, max_episode_steps: int | None = None, sticky_action_prob: float = 0.1):
    """``(env, params)``: gymnax's MinAtar ``game`` with MinAtar's sticky actions (gymnax's
    ``StickyActionWrapper``) and, if given, another episode step limit."""
    gymnax = _gymnax()
    from gymnax.wrappers import StickyActionWrapper

    if not 0.0 <= sticky_action_prob <= 1.0:
        raise EnvError(f"sticky_action_prob must be in [0, 1], got {sticky_action_prob!r}")
    env, params = gymnax.make(f"{game_name(game)}-MinAtar")
    if max_episode_steps is not None:
        if isinstance(max_episode_steps, bool) or int(max_episode_steps) != max_episode_steps \
                or max_episode_steps < 1:
            raise EnvError(f"max_episode_steps must be a positive integer, got {max_episode_steps!r}")
        params = params.replace(max_steps_in_episode=int(max_episode_steps))
    return StickyActionWrapper(env, sticky_action_prob), params


def minatar_spec(env_id: str) -> EnvSpec:
    """The :class:`EnvSpec` of a MinAtar game (builds the gymnax env, compiles nothing)."""
    env, _ = make_gymnax(env_id, None)
    return EnvSpec(num_actions=int(env.num_actions), frame_shape=tuple(env.obs_shape),
                   frame_dtype=np.bool_, frame_stack=1)


class MinAtarState(NamedTuple):
    """The batch's env state (a pytree; leading axis ``N`` on every leaf)."""

    game: Any  # the sticky-action wrapper's state of each env: ``env_state`` (gymnax's game, whose ``time`` counts the episode's steps) and ``last_action`` (played at the previous step)
    frame: Any  # bool [N, 10, 10, C]: the frame to act on
    game_return: Any  # float32 [N]: reward summed over the running game


class MinAtarFunctional:
    """``num_envs`` MinAtar envs as pure, jittable functions (see the module doc)."""

    def __init__(self, game: str, num_envs: int, *, max_episode_steps: int | None = None,
                 sticky_action_prob: float = 0.1):
        self.sticky_action_prob = float(sticky_action_prob)
        self.game = game_name(game)
        if isinstance(num_envs, bool) or int(num_envs) != num_envs or num_envs < 1:
            raise EnvError(f"num_envs must be a positive integer, got {num_envs!r}")
        self.num_envs = int(num_envs)
        self.env, self.params = make_gymnax(self.game, max_episode_steps, sticky_action_prob)
        self.max_episode_steps = int(self.params.max_steps_in_episode)
        self.spec = EnvSpec(num_actions=int(self.env.num_actions),
                            frame_shape=tuple(self.env.obs_shape),
                            frame_dtype=np.bool_, frame_stack=1)

    def _env_keys(self, key):
        import jax
        import jax.numpy as jnp

        return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, jnp.arange(self.num_envs))

    def init(self, key) -> tuple[MinAtarState, Any]:
        """``key -> (env_state, frames bool [N, 10, 10, C])``: every env starts a game."""
        import jax
        import jax.numpy as jnp

        obs, game = jax.vmap(self.env.reset, in_axes=(0, None))(self._env_keys(key), self.params)
        frame = obs.astype(jnp.bool_)
        return MinAtarState(game, frame, jnp.zeros(self.num_envs, jnp.float32)), frame

    def step(self, key, env_state: MinAtarState, actions) -> tuple[MinAtarState, FunctionalStep]:
        """One step of every env with ``actions`` int ``[N]`` (same-step autoreset)."""
        import jax
        import jax.numpy as jnp

        actions = jnp.asarray(actions, jnp.int32).reshape(self.num_envs)
        obs, game, reward, terminated, truncated, _ = jax.vmap(
            self.env.step, in_axes=(0, 0, 0, None))(
                self._env_keys(key), env_state.game, actions, self.params)
        reward = reward.astype(jnp.float32)
        terminated = terminated.astype(jnp.bool_)
        truncated = truncated.astype(jnp.bool_) & ~terminated
        game_end = terminated | truncated
        running = env_state.game_return + reward
        frame = obs.astype(jnp.bool_)
        out = FunctionalStep(
            frame=frame,
            reward=reward,
            terminated=terminated,
            truncated=truncated,
            game_end=game_end,
            game_return=jnp.where(game_end, running, 0.0).astype(jnp.float32),
        )
        return MinAtarState(game, frame, jnp.where(game_end, 0.0, running)), out

    def observation(self, env_state: MinAtarState):
        """``env_state -> bool [N, 10, 10, C]`` (``frame_stack`` is 1)."""
        return env_state.frame

    def __repr__(self) -> str:
        return (f"MinAtarFunctional(game={self.game!r}, num_envs={self.num_envs}, "
                f"max_episode_steps={self.max_episode_steps})")


class MinAtarEnvs(ClosesOnExit):
    """A host :class:`~agents.envs.base.VectorEnv` over :class:`MinAtarFunctional`.

    ``reset(seed=None) -> frames`` and ``step(actions) -> (frames, reward, terminated,
    truncated, StepInfo)`` return NumPy arrays (frames ``bool [N, 10, 10, C]``, reward
    float32, flags bool; ``StepInfo.game_return`` is 0 where no game ended). Each step is
    one jitted call of the functional step plus one device-to-host transfer.
    """

    def __init__(self, game: str, num_envs: int, *, seed: int,
                 mode: Literal["train", "eval"] = "train", max_episode_steps: int | None = None,
                 sticky_action_prob: float = 0.1):
        if mode not in ("train", "eval"):
            raise EnvError(f"mode must be 'train' or 'eval', got {mode!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise EnvError(f"seed must be an integer, got {seed!r}")
        self._functional = MinAtarFunctional(game, num_envs, max_episode_steps=max_episode_steps,
                                             sticky_action_prob=sticky_action_prob)
        self.game = self._functional.game
        self.num_envs = self._functional.num_envs
        self.spec = self._functional.spec
        self.max_episode_steps = self._functional.max_episode_steps
        self.mode = mode
        self.seed = int(seed)
        self._key = None
        self._state: MinAtarState | None = None
        self._reset_fn = None
        self._step_fn = None

    @property
    def functional(self) -> MinAtarFunctional:
        return self._functional

    def _compiled(self):
        if self._step_fn is None:
            import jax

            fenv = self._functional

            def reset(key):
                key, sub = jax.random.split(key)
                state, frames = fenv.init(sub)
                return key, state, frames

            def step(key, state, actions):
                key, sub = jax.random.split(key)
                state, out = fenv.step(sub, state, actions)
                return key, state, out

            self._reset_fn = jax.jit(reset)
            self._step_fn = jax.jit(step)
        return self._reset_fn, self._step_fn

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Starts a game in every env from ``PRNGKey(seed)`` (default: the constructor's
        seed); returns frames ``bool [N, 10, 10, C]``."""
        import jax

        reset_fn, _ = self._compiled()
        seed = self.seed if seed is None else int(seed)
        self._key, self._state, frames = reset_fn(jax.random.PRNGKey(seed))
        return np.asarray(frames)

    def step(self, actions) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, StepInfo]:
        import jax

        if self._state is None:
            raise RuntimeError("call reset() before step()")
        actions = np.asarray(actions)
        if not np.issubdtype(actions.dtype, np.integer):
            raise TypeError(f"actions must be integers, got {actions.dtype}")
        if actions.size != self.num_envs:
            raise ValueError(f"expected {self.num_envs} actions, got shape {actions.shape}")
        actions = actions.reshape(self.num_envs)
        if actions.min() < 0 or actions.max() >= self.spec.num_actions:
            raise ValueError(f"actions must lie in [0, {self.spec.num_actions}), got {actions}")
        _, step_fn = self._compiled()
        self._key, self._state, out = step_fn(self._key, self._state, actions.astype(np.int32))
        out = FunctionalStep(*(np.asarray(x) for x in jax.device_get(tuple(out))))
        return (out.frame, out.reward, out.terminated, out.truncated,
                StepInfo(game_end=out.game_end, game_return=out.game_return))

    def observation(self) -> np.ndarray:
        """Frames to act on now, ``bool [N, 10, 10, C]``."""
        if self._state is None:
            raise RuntimeError("call reset() before observation()")
        return np.asarray(self._functional.observation(self._state))

    @property
    def state(self) -> MinAtarState | None:
        """The batch's current env state (device arrays), ``None`` before ``reset``."""
        return self._state

    def close(self) -> None:
        self._state = None

    def __repr__(self) -> str:
        return (f"MinAtarEnvs(game={self.game!r}, num_envs={self.num_envs}, mode={self.mode!r}, "
                f"frame_shape={self.spec.frame_shape}, num_actions={self.spec.num_actions})")


class MinAtarSimulator:
    """The game itself as a :class:`~dreamer.world_model.WorldModel`: the planner searches
    gymnax's own step function instead of a learned dynamics model (the bound a perfect world
    model gives), with a learned ``predictor``'s value and policy prior at every node.

    A search state is one game's gymnax state (the sticky-action wrapper's inner state)
    flattened into a float32 vector (``jax.flatten_util.ravel_pytree``; the counters, positions
    and flags of MinAtar states are small integers, exact in float32), so :func:`dreamer.plan`
    takes a batch of them ``[B, D]`` as its observations and checks them like any others.
    :meth:`encode` turns a :class:`MinAtarState` batch into that input.

    ``recurrent_inference`` steps the game without sticky actions (the planner plays the action
    it chooses) and with a key fixed by the state's step count and the action, so the game's own
    randomness (spawns) is sampled once per edge and the model is deterministic, as the search
    assumes. Rewards are the game's; ``discount`` is 0 after the game ends (terminal or its
    time limit). ``predictor`` is any model with ``initial_inference(params, frames)`` over the
    game's bool frames (EfficientZero's learned model); ``params`` are its parameters.
    """

    value_prefix = False
    observation_dtype = None

    def __init__(self, game: str, predictor: Any):
        import jax

        self.env, self.params = make_gymnax(game, sticky_action_prob=0.0)
        self.game = game_name(game)
        self.predictor = predictor
        self.num_actions = int(self.env.num_actions)
        _, example = self.env.reset(jax.random.PRNGKey(0), self.params)
        leaves, self._treedef = jax.tree_util.tree_flatten(example.env_state)
        self._leaves = [(np.shape(x), np.asarray(x).dtype) for x in leaves]
        self.observation_shape = (int(sum(np.prod(shape, dtype=int) for shape, _ in self._leaves)),)

    def _ravel(self, state):
        """One game state -> ``float32 [D]``."""
        import jax
        import jax.numpy as jnp

        return jnp.concatenate([jnp.ravel(x).astype(jnp.float32) for x in jax.tree_util.tree_leaves(state)])

    def _unravel(self, flat):
        """``float32 [D]`` -> one game state, every leaf back in its own dtype."""
        import jax
        import jax.numpy as jnp

        leaves, at = [], 0
        for shape, dtype in self._leaves:
            size = int(np.prod(shape, dtype=int))
            x = flat[at:at + size].reshape(shape)
            leaves.append(x > 0.5 if dtype == np.bool_ else (jnp.round(x) if np.issubdtype(dtype, np.integer) else x)
                          .astype(dtype))
            at += size
        return jax.tree_util.tree_unflatten(self._treedef, leaves)

    def encode(self, env_state: MinAtarState):
        """``MinAtarState`` of ``N`` envs -> the planner's input ``float32 [N, D]``."""
        import jax

        return jax.vmap(self._ravel)(env_state.game.env_state)

    def _frames(self, states):
        import jax
        import jax.numpy as jnp

        return jax.vmap(lambda s: self.env.get_obs(s, self.params))(states).astype(jnp.bool_)

    def _evaluate(self, params, states):
        out = self.predictor.initial_inference(params, self._frames(states))
        return out.value, out.policy_logits

    def initial_inference(self, params, obs):
        from dreamer.world_model import InitialOutput
        import jax

        value, logits = self._evaluate(params, jax.vmap(self._unravel)(obs))
        return InitialOutput(obs, value, logits)

    def recurrent_inference(self, params, state, action):
        import jax
        import jax.numpy as jnp
        from dreamer.world_model import RecurrentOutput

        states = jax.vmap(self._unravel)(state)
        keys = jax.vmap(lambda t, a: jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(0), t), a))(
            jnp.asarray(states.time, jnp.int32), action)
        # step_env's time-limit flag is gymnax's is_terminal (the game over or the step cap)
        _, nxt, reward, done, _ = jax.vmap(self.env.step_env, in_axes=(0, 0, 0, None))(keys, states, action,
                                                                                        self.params)
        value, logits = self._evaluate(params, nxt)
        return RecurrentOutput(jax.vmap(self._ravel)(nxt), reward.astype(jnp.float32), value, logits,
                               1.0 - done.astype(jnp.float32))
