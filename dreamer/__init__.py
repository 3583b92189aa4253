"""dreamer: planning with learned world models in JAX (EfficientZero-style).

The public API is what ``__all__`` lists; everything else is internal.

* Planning: :func:`plan` over any :class:`WorldModel` (learned or a true simulator).
* Training: :class:`Learner` (EfficientZero's update, stage by stage) over any
  :class:`TrainableWorldModel`; :class:`LearnedWorldModel` turns the five training
  functions of a model into a planning model; :mod:`dreamer.replay` is the device replay.
* Agents: the :class:`Agent` contract the training loop drives (``agents.loop``).
"""

from dreamer import replay
from dreamer.agent import ActOutput, Agent, Transition
from dreamer.config import (
    Config,
    EnvConfig,
    LearnerConfig,
    LoopConfig,
    NetworkConfig,
    PlannerConfig,
    ReplayConfig,
)
from dreamer.learner import Learner, TrainState, make_optimizer
from dreamer.losses import TrainBatch, loss_fn
from dreamer.networks import EfficientZeroModel
from dreamer.planner import PlanOutput, make_qtransform, make_recurrent_fn, make_root, min_max_qtransform, plan
from dreamer.replay import ReplayState
from dreamer.scalar import Support, h, h_inv
from dreamer.world_model import (
    InitialOutput,
    LatentState,
    LearnedWorldModel,
    RecurrentOutput,
    TrainableWorldModel,
    WorldModel,
    starts_prefix_segment,
)

__all__ = [
    "ActOutput",
    "Agent",
    "Config",
    "EfficientZeroModel",
    "EnvConfig",
    "InitialOutput",
    "LatentState",
    "LearnedWorldModel",
    "Learner",
    "LearnerConfig",
    "LoopConfig",
    "NetworkConfig",
    "PlanOutput",
    "PlannerConfig",
    "RecurrentOutput",
    "ReplayConfig",
    "ReplayState",
    "Support",
    "TrainBatch",
    "TrainState",
    "TrainableWorldModel",
    "Transition",
    "WorldModel",
    "h",
    "h_inv",
    "loss_fn",
    "make_optimizer",
    "make_qtransform",
    "make_recurrent_fn",
    "make_root",
    "min_max_qtransform",
    "plan",
    "replay",
    "starts_prefix_segment",
]

__version__ = "0.1.0"
