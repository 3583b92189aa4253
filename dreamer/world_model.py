"""The world-model contract the planner searches in.

A world model is any object with two pure functions over ``params`` and a few
static attributes. A learned model (``dreamer.networks``) and a true simulator
written in JAX (``agents/maze``) both fit. Outputs are already scalars: the model
decodes its own categorical supports.

Shapes: ``B`` batch, ``A`` actions. ``state`` is any pytree whose leaves have a
leading ``B`` axis.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, runtime_checkable

import jax.numpy as jnp

Params = Any
State = Any


class InitialOutput(NamedTuple):
    """What ``initial_inference`` returns."""

    state: State  # pytree, leaves [B, ...]
    value: jnp.ndarray  # [B] float
    policy_logits: jnp.ndarray  # [B, A]


class RecurrentOutput(NamedTuple):
    """What ``recurrent_inference`` returns.

    ``reward`` is the per-step reward, or the value prefix (sum of rewards since the
    last prefix reset) when the model sets ``value_prefix = True``. ``discount`` is the
    per-step discount multiplier in [0, 1] (0 past a terminal state); ``None`` means
    1 everywhere. The planner multiplies it with its own ``config.discount``.
    """

    state: State
    reward: jnp.ndarray  # [B]
    value: jnp.ndarray  # [B]
    policy_logits: jnp.ndarray  # [B, A]
    discount: jnp.ndarray | None = None  # [B] or None


@runtime_checkable
class WorldModel(Protocol):
    """What the planner needs from a model.

    Attributes:
      num_actions: size of the discrete action space ``A``.
      observation_shape: shape of one observation (without the batch axis).
      observation_dtype: optional; when set, observations must have this dtype.
      value_prefix: ``True`` if ``recurrent_inference`` returns EfficientZero's value
        prefix instead of a reward. Such a model must also implement
        ``reset_value_prefix(state) -> state``, which clears the prefix memory (the
        LSTM state) and is called by the planner every ``value_prefix_horizon`` steps.
    """

    num_actions: int
    observation_shape: tuple[int, ...]

    def initial_inference(self, params: Params, obs: jnp.ndarray) -> InitialOutput: ...

    def recurrent_inference(self, params: Params, state: State, action: jnp.ndarray) -> RecurrentOutput: ...
