"""Agents built on the dreamer library: EfficientZero (learned model) and a maze planner (known model)."""
