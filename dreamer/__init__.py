"""dreamer: planning with learned world models in JAX (EfficientZero-style).

The public API is what ``__all__`` lists; everything else is internal.
"""

from dreamer.config import PlannerConfig
from dreamer.planner import PlanOutput, make_qtransform, make_recurrent_fn, make_root, min_max_qtransform, plan
from dreamer.scalar import Support, h, h_inv
from dreamer.world_model import InitialOutput, RecurrentOutput, WorldModel

__all__ = [
    "InitialOutput",
    "PlanOutput",
    "PlannerConfig",
    "RecurrentOutput",
    "Support",
    "WorldModel",
    "h",
    "h_inv",
    "make_qtransform",
    "make_recurrent_fn",
    "make_root",
    "min_max_qtransform",
    "plan",
]

__version__ = "0.1.0"
