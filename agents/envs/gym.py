"""Vector envs over any discrete-action gymnasium env with vector observations.

Same-step autoreset: when an episode ends, ``step`` returns the first observation of
the next episode, and the reward and end flags of the step that ended. Finished
episode returns and lengths come back in ``info`` (``episode_returns``; per env:
``game_end`` and ``game_return``).
"""

from __future__ import annotations

import contextlib
import difflib
import re
import warnings

import gymnasium as gym
import numpy as np

from agents.envs.base import EnvError, EnvSpec


@contextlib.contextmanager
def _quiet_deprecations():
    """gymnasium warns on every ``make`` of an older version of an env (CartPole-v0, the
    anchor of our CartPole comparison): the user chose that id, so the warning is noise."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*(out of date|deprecated).*")
        yield


# gymnasium families that need an optional dependency, and the extra of ours that brings it.
EXTRAS = {"Box2D": "box2d", "mujoco": "mujoco", "pygame": "classic-control"}


def _make(env_id: str, **kwargs):
    """``gym.make`` with a one-line :class:`EnvError` naming our extra when a family's
    dependency is missing (gymnasium's own error is a multi-line traceback)."""
    try:
        with _quiet_deprecations():
            return gym.make(env_id, **kwargs)
    except gym.error.DependencyNotInstalled as e:
        text = str(e)
        extra = next((x for name, x in EXTRAS.items() if name.lower() in text.lower()), None)
        how = f'pip install -e ".[{extra}]"' if extra else text.split(".")[0]
        raise EnvError(f"{env_id} needs a package that is not installed: {how}") from None


def check_env_id(env_id: str) -> None:
    """Raises :class:`EnvError` for an unknown id, suggesting only genuinely close registered ids.

    Ids are compared without their version suffix and case (``cartpol-v1`` and
    ``CartPole`` are both close to ``CartPole-v1``): on whole ids, the ``-v0``/``-v4``
    suffix that hundreds of registered Atari ids share made unrelated names look
    half-similar (``NoSuchEnv-v0`` drew ``UpNDown-v0, Pong-v0``). The close ones are
    listed most similar first, at most three.
    """
    if env_id in gym.registry:
        return

    def stem(name: str) -> str:
        return re.sub(r"-v\d+$", "", name).lower()

    want = stem(env_id)
    close = [k for k in gym.registry if difflib.SequenceMatcher(None, want, stem(k)).ratio() >= 0.8]
    close.sort(key=lambda k: -difflib.SequenceMatcher(None, env_id.lower(), k.lower()).ratio())
    close = close[:3]
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise EnvError(f"unknown gymnasium env id {env_id!r}{hint}")


def describe_spaces(env_id: str) -> tuple[tuple[int, ...], np.dtype, int]:
    """``(observation_shape, observation_dtype, num_actions)`` without stepping the env.

    Raises :class:`EnvError` for unknown ids, non-discrete action spaces and
    observation spaces other than a flat ``Box``.
    """
    check_env_id(env_id)
    env = _make(env_id)
    try:
        act, obs = env.action_space, env.observation_space
    finally:
        env.close()
    if not isinstance(act, gym.spaces.Discrete):
        raise EnvError(
            f"{env_id} has a {type(act).__name__} action space; only Discrete action spaces are supported"
        )
    if not isinstance(obs, gym.spaces.Box) or len(obs.shape) != 1:
        raise EnvError(
            f"{env_id} has observation space {obs}; the vector (mlp) network needs a flat Box of shape [D]"
        )
    return tuple(obs.shape), np.dtype(np.float32), int(act.n)


class GymEnvs:
    """``num_envs`` copies of a gymnasium env stepped in lockstep (same-step autoreset).

    A :class:`~agents.envs.base.VectorEnv` (host-only: ``functional`` is ``None``).
    """

    functional = None

    def __init__(self, env_id: str, num_envs: int, seed: int, max_episode_steps: int | None = None):
        frame_shape, frame_dtype, num_actions = describe_spaces(env_id)
        self.spec = EnvSpec(num_actions=num_actions, frame_shape=frame_shape, frame_dtype=frame_dtype)
        kwargs = {} if max_episode_steps is None else {"max_episode_steps": max_episode_steps}
        self.envs = [_make(env_id, **kwargs) for _ in range(num_envs)]
        self.num_envs = num_envs
        self.seed = seed
        self._returns = np.zeros(num_envs, np.float64)
        self._lengths = np.zeros(num_envs, np.int64)
        self._frames = np.zeros((num_envs, *frame_shape), np.float32)

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Resets every env, env ``i`` seeded with ``seed + i`` (default: the constructor's seed)."""
        seed = self.seed if seed is None else seed
        frames = [env.reset(seed=seed + i)[0] for i, env in enumerate(self.envs)]
        self._returns[:] = 0
        self._lengths[:] = 0
        self._frames = np.asarray(frames, np.float32)
        return self._frames

    def observation(self) -> np.ndarray:
        return self._frames

    def step(self, actions: np.ndarray):
        frames = np.empty((self.num_envs, *self.spec.frame_shape), np.float32)
        rewards = np.empty(self.num_envs, np.float32)
        terminated = np.empty(self.num_envs, bool)
        truncated = np.empty(self.num_envs, bool)
        returns, lengths = [], []
        game_end = np.zeros(self.num_envs, bool)
        game_return = np.zeros(self.num_envs, np.float64)
        for i, env in enumerate(self.envs):
            obs, r, term, trunc, _ = env.step(int(actions[i]))
            self._returns[i] += r
            self._lengths[i] += 1
            if term or trunc:
                returns.append(float(self._returns[i]))
                game_end[i], game_return[i] = True, self._returns[i]
                lengths.append(int(self._lengths[i]))
                self._returns[i] = 0
                self._lengths[i] = 0
                obs, _ = env.reset()
            frames[i], rewards[i], terminated[i], truncated[i] = obs, r, term, trunc
        info = {"episode_returns": returns, "episode_lengths": lengths, "game_end": game_end, "game_return": game_return}
        self._frames = frames
        return frames, rewards, terminated, truncated, info

    def close(self) -> None:
        for env in self.envs:
            env.close()
