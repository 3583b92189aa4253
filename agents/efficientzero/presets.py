"""Named presets. Every paper number carries its source; every deviation says why."""

from __future__ import annotations

from typing import Callable

from dreamer.config import Config, EnvConfig, LearnerConfig, LoopConfig, NetworkConfig, PlannerConfig, ReplayConfig


def cartpole() -> Config:
    """The small default: learns CartPole-v0 (episodes capped at 200) in a few thousand env steps on a CPU.

    Small MLP model, Gumbel search with few simulations (two actions need no more),
    Adam with a high replay ratio, and a short discount horizon (0.97) so values stay small.
    """
    return Config(
        preset="cartpole",
        env=EnvConfig(id="CartPole-v0", num_envs=8, num_eval_envs=10, eval_episodes=10),
        network=NetworkConfig(
            kind="mlp",
            latent_dim=64,
            hidden=(128,),
            head_hidden=(64,),
            lstm_hidden=32,
            projection_hidden=64,
            projection_out=64,
            predictor_hidden=32,
            value_support=(-10.0, 10.0, 41),
            reward_support=(-5.0, 5.0, 21),
        ),
        planner=PlannerConfig(search="gumbel", num_simulations=8, discount=0.97, max_num_considered_actions=2),
        replay=ReplayConfig(capacity=20_000, batch_size=128, min_size=256, beta_anneal_updates=5_000),
        learner=LearnerConfig(
            optimizer="adamw",
            learning_rate=3e-3,
            warmup_updates=50,
            weight_decay=1e-4,
            max_grad_norm=5.0,
            td_steps=5,
            td_age_step=100_000,
            target_update_interval=50,
            reanalyze_fraction=1.0,
            updates_per_call=4,
        ),
        loop=LoopConfig(
            env_steps=10_000,
            replay_ratio=0.5,
            temperature_schedule=((0.5, 1.0), (0.75, 0.5), (1.0, 0.25)),
            eval_every=500,
            log_every_s=5.0,
            checkpoint_every_s=60.0,
        ),
    )


def debug() -> Config:
    """A tiny CartPole run for smoke tests: a few hundred steps, tiny networks."""
    cfg = cartpole()
    return Config(
        preset="debug",
        env=EnvConfig(id="CartPole-v0", num_envs=4, num_eval_envs=2, eval_episodes=2),
        network=NetworkConfig(
            kind="mlp", latent_dim=16, hidden=(32,), head_hidden=(16,), lstm_hidden=8,
            projection_hidden=16, projection_out=16, predictor_hidden=8,
            value_support=(-10.0, 10.0, 21), reward_support=(-5.0, 5.0, 11),
        ),
        planner=PlannerConfig(search="gumbel", num_simulations=4, discount=0.97, max_num_considered_actions=2),
        replay=ReplayConfig(capacity=2_000, batch_size=16, min_size=64),
        learner=cfg.learner.__class__(**{**cfg.learner.__dict__, "updates_per_call": 2}),
        loop=LoopConfig(env_steps=400, replay_ratio=0.25, eval_every=200, log_every_s=1.0, checkpoint_every_s=30.0),
    )


PRESETS: dict[str, Callable[[], Config]] = {
    "cartpole": cartpole,
    "debug": debug,
}


def get_preset(name: str) -> Config:
    if name not in PRESETS:
        import difflib

        close = difflib.get_close_matches(name, list(PRESETS), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown preset {name!r} (known: {', '.join(sorted(PRESETS))}){hint}")
    return PRESETS[name]()
