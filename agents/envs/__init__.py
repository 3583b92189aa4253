"""Environments for the agents: the Atari-100k protocol and its vector envs."""

from agents.envs.atari import (
    ATARI100K,
    ATARI100K_GAMES,
    AtariEnvs,
    AtariProtocol,
    ale_game_id,
    make_envs,
    make_eval_envs,
    make_train_envs,
    protocol_from_config,
)

__all__ = [
    "ATARI100K",
    "ATARI100K_GAMES",
    "AtariEnvs",
    "AtariProtocol",
    "ale_game_id",
    "make_envs",
    "make_eval_envs",
    "make_train_envs",
    "protocol_from_config",
]
