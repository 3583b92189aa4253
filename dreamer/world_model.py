"""World-model contracts: what the planner searches in, and what the learner trains.

**Planning** (:class:`WorldModel`): any object with two pure functions over ``params``
and a few static attributes. A learned model and a true simulator written in JAX
(``agents/maze``) both fit. Outputs are already scalars.

**Training** (:class:`TrainableWorldModel`): what the losses and the learner use. A model
exposes raw categorical outputs (logits over its value and reward supports) and a latent
state :class:`LatentState`; :class:`LearnedWorldModel` turns any such model into a
planning model, so a user writes the five training functions once and gets both.

**The value prefix** (EfficientZero): a value-prefix model predicts, after step ``k`` of
an unroll, the sum of rewards since the last prefix reset instead of the step's reward.
Resets fall at fixed steps, :func:`starts_prefix_segment`, the one rule that the planner,
the targets and the losses all use.

Shapes: ``B`` batch, ``A`` actions. A state is any pytree whose leaves have a leading
``B`` axis.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, runtime_checkable

import jax
import jax.numpy as jnp

from dreamer.scalar import Support

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
      value_prefix: optional, default ``False``. ``True`` if ``recurrent_inference``
        returns EfficientZero's value prefix instead of a reward. Such a model also sets
        ``value_prefix_horizon`` and implements ``reset_value_prefix(state) -> state``,
        which clears the prefix memory at the steps :func:`starts_prefix_segment` names.
    """

    num_actions: int
    observation_shape: tuple[int, ...]

    def initial_inference(self, params: Params, obs: jnp.ndarray) -> InitialOutput: ...

    def recurrent_inference(self, params: Params, state: State, action: jnp.ndarray) -> RecurrentOutput: ...


def starts_prefix_segment(step: Any, horizon: int) -> Any:
    """True where unroll step ``step`` (1 for the first transition) starts a new value-prefix
    segment: steps 1, horizon + 1, 2 horizon + 1, ... The prefix predicted after such a step
    counts that step's reward alone, and the prefix memory is cleared before it."""
    return (step - 1) % horizon == 0


# ---------------------------------------------------------------------------------------
# The training contract


class LatentState(NamedTuple):
    """A learned model's recurrent state.

    ``latent`` is what the dynamics carry forward; the learner scales its gradient by 1/2
    at every unroll step (MuZero, EfficientZero). ``memory`` is the value-prefix memory
    (EfficientZero's LSTM carry), cleared at prefix resets, or ``()`` for a model without
    a value prefix.
    """

    latent: Any  # [B, ...]
    memory: Any = ()  # pytree of [B, ...] leaves, or ()


def scale_gradient(x, scale: float):
    """Identity forward; gradient multiplied by ``scale`` (a pytree of arrays)."""
    if scale == 1.0:
        return x
    return jax.tree_util.tree_map(lambda t: t * scale + jax.lax.stop_gradient(t) * (1.0 - scale), x)


def clear_memory(state: LatentState) -> LatentState:
    """The state with its value-prefix memory zeroed (a prefix reset)."""
    return state._replace(memory=jax.tree_util.tree_map(jnp.zeros_like, state.memory))


@runtime_checkable
class TrainableWorldModel(Protocol):
    """What the learner and the losses use: raw outputs over declared supports.

    Attributes:
      num_actions, observation_shape, observation_dtype: as for :class:`WorldModel`.
      value_support, reward_support: :class:`~dreamer.scalar.Support` of the value and
        reward (or value-prefix) logits.
      value_prefix: whether ``dynamics`` predicts value prefixes; then
        ``value_prefix_horizon`` is the reset period.
    """

    num_actions: int
    observation_shape: tuple[int, ...]
    value_support: Support
    reward_support: Support
    value_prefix: bool
    value_prefix_horizon: int

    def init(self, rng: jnp.ndarray) -> Params:
        """Fresh parameters."""
        ...

    def represent(self, params: Params, obs: jnp.ndarray) -> LatentState:
        """``[B, *observation_shape]`` -> the initial state (memory cleared)."""
        ...

    def predict(self, params: Params, state: LatentState) -> tuple[jnp.ndarray, jnp.ndarray]:
        """state -> (value logits ``[B, value bins]``, policy logits ``[B, A]``), float32."""
        ...

    def dynamics(self, params: Params, state: LatentState, action: jnp.ndarray) -> tuple[LatentState, jnp.ndarray]:
        """(state, action ``[B]``) -> (next state, reward or value-prefix logits ``[B, reward bins]``)."""
        ...

    def project(self, params: Params, state: LatentState, with_predictor: bool = True) -> jnp.ndarray:
        """SimSiam projection of the latent (and predictor), ``[B, P]`` float32, for the
        temporal-consistency loss."""
        ...


class LearnedWorldModel:
    """Base class for trainable models: planning comes from the training functions.

    Subclasses set the attributes of :class:`TrainableWorldModel` and implement ``init``,
    ``represent``, ``predict``, ``dynamics`` and ``project``; this class supplies the
    :class:`WorldModel` side (scalars decoded from the supports) and the prefix reset.
    """

    observation_dtype: Any = None
    value_prefix: bool = False
    value_prefix_horizon: int = 1

    def initial_inference(self, params: Params, obs: jnp.ndarray) -> InitialOutput:
        state = self.represent(params, obs)
        v_logits, p_logits = self.predict(params, state)
        return InitialOutput(state, self.value_support.decode_logits(v_logits), p_logits)

    def recurrent_inference(self, params: Params, state: LatentState, action: jnp.ndarray) -> RecurrentOutput:
        state, r_logits = self.dynamics(params, state, action)
        v_logits, p_logits = self.predict(params, state)
        return RecurrentOutput(
            state,
            self.reward_support.decode_logits(r_logits),
            self.value_support.decode_logits(v_logits),
            p_logits,
        )

    def reset_value_prefix(self, state: LatentState) -> LatentState:
        return clear_memory(state)
