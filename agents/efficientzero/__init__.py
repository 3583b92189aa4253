"""The EfficientZero agent: presets over the dreamer library, behind the agent contract."""

from agents.efficientzero.agent import AgentState, check_env, make_agent, make_model
from agents.efficientzero.presets import PRESETS, get_preset

__all__ = ["PRESETS", "AgentState", "check_env", "get_preset", "make_agent", "make_model"]
