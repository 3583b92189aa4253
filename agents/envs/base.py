"""The env contract: what the training loop and the agents need from a batch of envs.

Two kinds of vector env meet it:

* :class:`VectorEnv`, stepped from the host (gymnasium, ale-py): ``reset``, ``step`` and
  ``observation`` on NumPy arrays. Every env family implements it, so evaluation and
  scripts work the same everywhere.
* :class:`FunctionalEnv`, pure JAX functions over an explicit env state (gymnax's
  MinAtar). A host env that has one returns it from ``VectorEnv.functional``; the loop
  then fuses acting, env steps and replay writes into one compiled program and does no
  per-step host work. Host-only envs return ``None``.

Conventions shared by both:

* **Same-step autoreset.** When an env's episode ends at a step, the frame returned for
  it is already the first frame of its next episode; reward and end flags describe the
  step that just ended.
* **Episodes and games.** ``terminated`` / ``truncated`` end a *training episode* (for
  Atari a life loss terminates one while the game goes on). ``game_end`` marks the end
  of a whole game, with its undiscounted, unclipped return in ``game_return``: that is
  what evaluation and the logged episode returns count.
* **Frames and observations.** ``frame_shape`` is one frame ``[H, W, C]`` (or ``[D]``);
  the replay stores single frames. The observation the agent acts on stacks the last
  ``frame_stack`` frames on the channel axis, oldest first (``spec.observation_shape``).

Shapes: ``N`` envs.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np


class EnvError(ValueError):
    """A user-facing problem with the requested env: unknown id, unsupported spaces, a
    missing optional dependency. The message is one line."""


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    """Static facts about one env of a batch: what an agent is built from."""

    num_actions: int
    frame_shape: tuple[int, ...]
    frame_dtype: Any = np.float32
    frame_stack: int = 1

    @property
    def observation_shape(self) -> tuple[int, ...]:
        """One acting observation: the frames stacked on the last (channel) axis."""
        if self.frame_stack == 1:
            return tuple(self.frame_shape)
        return tuple(self.frame_shape[:-1]) + (self.frame_shape[-1] * self.frame_stack,)


class StepInfo(NamedTuple):
    """Per-env bookkeeping returned by ``step`` (host arrays or JAX arrays, ``[N]``)."""

    game_end: Any  # bool [N]: a whole game ended at this step (and the env was reset)
    game_return: Any  # float [N]: that game's unclipped return (0 where none ended)


@runtime_checkable
class VectorEnv(Protocol):
    """``num_envs`` envs stepped in lockstep from the host.

    ``step`` returns ``(frames [N, *frame_shape], reward [N] float32, terminated [N] bool,
    truncated [N] bool, info)`` where ``info`` is a :class:`StepInfo` or a mapping with at
    least ``game_end`` and ``game_return`` (env families add their own keys).
    """

    spec: EnvSpec
    num_envs: int

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Resets every env (env ``i`` seeded with ``seed + i``); returns frames ``[N, ...]``."""
        ...

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, Any]: ...

    def observation(self) -> np.ndarray:
        """The observations to act on now, ``[N, *spec.observation_shape]``."""
        ...

    @property
    def functional(self) -> "FunctionalEnv | None":
        """The same envs as pure JAX functions, or ``None`` for host-only envs."""
        ...

    def close(self) -> None: ...


class ClosesOnExit:
    """Mixin: ``with envs:`` closes the envs on leaving the block."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class FunctionalStep(NamedTuple):
    """What :meth:`FunctionalEnv.step` returns besides the new env state (JAX arrays, ``[N]``)."""

    frame: Any  # [N, *frame_shape] newest frame (first of the next episode after an end)
    reward: Any  # [N] float32
    terminated: Any  # [N] bool
    truncated: Any  # [N] bool
    game_end: Any  # [N] bool
    game_return: Any  # [N] float32


@runtime_checkable
class FunctionalEnv(Protocol):
    """A batch of envs as pure, jittable functions over an explicit state pytree."""

    spec: EnvSpec
    num_envs: int

    def init(self, key: Any) -> tuple[Any, Any]:
        """``key -> (env_state, frames [N, *frame_shape])``."""
        ...

    def step(self, key: Any, env_state: Any, actions: Any) -> tuple[Any, FunctionalStep]: ...

    def observation(self, env_state: Any) -> Any:
        """``env_state -> [N, *spec.observation_shape]``."""
        ...


def game_info(info: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(game_end, game_return)`` from a step's info, whichever form it takes."""
    if isinstance(info, StepInfo):
        return np.asarray(info.game_end, bool), np.asarray(info.game_return, np.float64)
    return np.asarray(info["game_end"], bool), np.asarray(info["game_return"], np.float64)
