"""Environments for the agents, behind one factory and one contract (:mod:`agents.envs.base`).

    envs = make(cfg.env, "train", seed=0)   # a VectorEnv; envs.spec is its EnvSpec

The id picks the family: an Atari game ("Breakout", "ALE/Pong-v5") gets the Atari-100k
protocol (:mod:`agents.envs.atari`); "MinAtar/<Game>" a gymnax MinAtar batch
(:mod:`agents.envs.minatar`); anything else a registered gymnasium id with vector
observations (:mod:`agents.envs.gym`).
"""

from __future__ import annotations

from typing import Any, Literal

from agents.envs.base import EnvError, EnvSpec, FunctionalEnv, FunctionalStep, StepInfo, VectorEnv, game_info

Mode = Literal["train", "eval"]


def family(env_id: str) -> str:
    """``"minatar"``, ``"atari"`` or ``"gym"`` for an env id (no env is built)."""
    if env_id.lower().startswith("minatar/"):
        return "minatar"
    import gymnasium as gym

    if env_id in gym.registry and not env_id.startswith("ALE/"):
        return "gym"
    from agents.envs import atari

    try:
        atari.ale_game_id(env_id)
    except ValueError:
        return "gym"
    return "atari"


def is_functional(env_id: str) -> bool:
    """Whether the envs of ``env_id`` are pure JAX functions (``VectorEnv.functional``), which
    the loop fuses with acting and can vmap over runs (no env is built)."""
    return family(env_id) == "minatar"


def make(env_cfg: Any, mode: Mode, seed: int) -> VectorEnv:
    """The training (``mode="train"``) or evaluation envs of an :class:`~dreamer.config.EnvConfig`.

    Raises :class:`EnvError` (one line) for an unknown id, unsupported spaces or a missing
    optional dependency.
    """
    if mode not in ("train", "eval"):
        raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")
    evaluation = mode == "eval"
    num_envs = env_cfg.num_eval_envs if evaluation else env_cfg.num_envs
    kind = family(env_cfg.id)
    if kind == "atari":
        from agents.envs import atari

        return atari.make_envs(env_cfg, evaluation=evaluation, seed=seed)
    cap = env_cfg.eval_max_episode_steps if evaluation else env_cfg.max_episode_steps
    if kind == "minatar":
        from agents.envs import minatar

        return minatar.MinAtarEnvs(env_cfg.id, num_envs, seed=seed, mode=mode, max_episode_steps=cap)
    from agents.envs.gym import GymEnvs

    return GymEnvs(env_cfg.id, num_envs, seed, max_episode_steps=cap)


__all__ = [
    "EnvError",
    "EnvSpec",
    "FunctionalEnv",
    "FunctionalStep",
    "StepInfo",
    "VectorEnv",
    "family",
    "game_info",
    "is_functional",
    "make",
]
