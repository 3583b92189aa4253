"""The EfficientZero agent: presets over the dreamer library, trained by ``agents.loop``."""

from agents.efficientzero.presets import PRESETS, get_preset

__all__ = ["PRESETS", "get_preset"]
