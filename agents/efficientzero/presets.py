"""Named presets. Every paper number carries its source; every deviation says why."""

from __future__ import annotations

import dataclasses
from typing import Callable

from dreamer.config import Config, EnvConfig, LearnerConfig, LoopConfig, NetworkConfig, PlannerConfig, ReplayConfig


def cartpole() -> Config:
    """The small default: learns CartPole-v0 (episodes capped at 200) in a few thousand env steps on a CPU.

    Small MLP model, Gumbel search with few simulations (two actions need no more) and
    Adam at replay ratio 1. Discount 0.99: a cart drifting off the track fails 100+ steps
    later, which a 0.97 horizon barely sees (returns up to 100 still fit the value support).
    ``rescale_values=False``: mctx's default min-max rescaling turns any Q gap between the
    two actions, however small, into a full unit, so near-equal actions got near-one-hot
    policy targets and the policy flipped on noise. Batch 256: with 128, one seed in five
    (seed 1) stayed below 195 for 5,000 env steps; 256 halves the gradient noise and that
    seed reached 195 at 1,000 steps (sweeps on a 2-core CPU, ``benchmarks/learning.py``).
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
        planner=PlannerConfig(search="gumbel", num_simulations=8, discount=0.99, max_num_considered_actions=2,
                              qtransform="completed_mix", rescale_values=False),
        replay=ReplayConfig(capacity=20_000, batch_size=256, min_size=256, beta_anneal_updates=5_000,
                            new_priority="running_max"),
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
            reanalyze_with="online",
            scale_loss_by_unroll=False,
            updates_per_call=4,
        ),
        loop=LoopConfig(
            env_steps=10_000,
            thresholds=(195.0,),  # CartPole-v0 is solved at an average return of 195
            stop_when_held=2,  # the default run ends once two evaluations in a row reach it
            replay_ratio=1.0,
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
        learner=dataclasses.replace(cfg.learner, updates_per_call=2),
        loop=LoopConfig(env_steps=400, replay_ratio=0.25, eval_every=200, log_every_s=1.0, checkpoint_every_s=30.0),
    )


def atari100k() -> Config:
    """EfficientZero's Atari-100k settings (``../shared/PROTOCOL.md``; Ye et al. 2021, config/atari).

    Deviations: layer norm over each sample's (H, W, C) instead of batch norm (pure
    functions, see networks.py); 16 training envs behind each search call (any number is
    allowed as long as the total is 100k agent steps); reanalysis by sweeps of the whole
    replay with each new target network (dreamer/reanalyze.py: the same targets as
    EfficientZero's per-batch reanalysis, which also searches with the target params, for
    about a fifth of the searches); the temporal-consistency targets are the projections
    each sweep stores with the target network (as BYOL's target network, where EfficientZero
    projects the K next observations with the online network at every update: half of an
    update's FLOPs, 0.578 -> 0.277 TFLOP). Latents are not min-max normalised
    (EfficientZero's Atari config: ``state_norm`` off).
    """
    return Config(
        preset="atari100k",
        env=EnvConfig(id="Breakout", num_envs=16, num_eval_envs=32, eval_episodes=32, frame_size=96, grayscale=False),
        network=NetworkConfig(
            kind="conv", channels=64, blocks=1, reduced_channels=16, head_hidden=(32,),
            lstm_hidden=512,  # value-prefix LSTM hidden 512
            projection_hidden=1024, projection_out=1024, predictor_hidden=512,  # SimSiam 1024-1024, 512-1024
            value_support=(-300.0, 300.0, 601), reward_support=(-300.0, 300.0, 601),  # 601 bins over [-300, 300]
            value_prefix=True, value_prefix_horizon=5,  # LSTM reset every 5 steps
            latent_norm=False, conv_norm="spatial",
        ),
        planner=PlannerConfig(
            search="puct", num_simulations=50, discount=0.997**4, pb_c_init=1.25, pb_c_base=19652.0,
            dirichlet_alpha=0.3, dirichlet_fraction=0.25, qtransform="min_max", min_max_floor=0.01,
        ),
        replay=ReplayConfig(
            capacity=100_000, batch_size=256, alpha=0.6, beta=0.4, beta_anneal_updates=100_000,
            min_size=2_000, frame_stack=4,
        ),
        learner=LearnerConfig(
            optimizer="sgd", learning_rate=0.2, warmup_updates=1_000, lr_decay_updates=100_000, lr_decay_factor=0.1,
            momentum=0.9, weight_decay=1e-4, max_grad_norm=5.0, unroll_steps=5, td_steps=5,
            td_age_step=30_000,  # td = clip(5 - age // 30000, 1, 5)
            target_update_interval=200, reanalyze="sweep", sweep_chunk=8192, reanalyze_fraction=0.99,
            consistency_targets="swept",
            value_loss_weight=0.25, reward_loss_weight=1.0, policy_loss_weight=1.0, consistency_loss_weight=2.0,
            updates_per_call=8, augment=True, flat_optimizer=True,
        ),
        loop=LoopConfig(
            env_steps=100_000, replay_ratio=1.0, extra_updates=20_000,  # 100k updates with collection + 20k after
            temperature_schedule=((0.5, 1.0), (0.75, 0.5), (1.0, 0.25)),
            eval_every=10_000, log_every_s=30.0, checkpoint_every_s=600.0,
        ),
    )


def atari100k_gumbel() -> Config:
    """EfficientZero V2's Atari settings where they differ from EfficientZero's (its public
    config, ez/config/exp/atari.yaml): Gumbel search with 16 simulations over the top 4 root
    actions, completed Q normalised over the tree-wide min-max (range floor 0.01, c_visit 50,
    c_scale 0.1), value loss 0.5, consistency 5.0, priority alpha = beta = 1. Its supports
    span [-300, 300] at step 1: 601 bins (its "bins: 51" applies to DMC only)."""
    cfg = atari100k()
    return dataclasses.replace(
        cfg,
        preset="atari100k-gumbel",
        planner=dataclasses.replace(cfg.planner, search="gumbel", num_simulations=16, max_num_considered_actions=4,
                                    qtransform="completed_min_max", min_max_floor=0.01, maxvisit_init=50.0,
                                    value_scale=0.1),
        replay=dataclasses.replace(cfg.replay, alpha=1.0, beta=1.0),
        learner=dataclasses.replace(cfg.learner, value_loss_weight=0.5, consistency_loss_weight=5.0),
    )


def atari_debug() -> Config:
    """A tiny Atari run that goes end to end on a CPU in minutes: 64x64 gray frames, small nets."""
    cfg = atari100k()
    return dataclasses.replace(
        cfg,
        preset="atari-debug",
        env=dataclasses.replace(cfg.env, num_envs=4, num_eval_envs=2, eval_episodes=2, frame_size=64, grayscale=True,
                                max_episode_steps=500, eval_max_episode_steps=500),
        network=dataclasses.replace(
            cfg.network, channels=16, reduced_channels=4, head_hidden=(16,), lstm_hidden=32,
            projection_hidden=64, projection_out=64, predictor_hidden=32,
            value_support=(-10.0, 10.0, 21), reward_support=(-5.0, 5.0, 11),
        ),
        planner=dataclasses.replace(cfg.planner, search="gumbel", num_simulations=4, max_num_considered_actions=4,
                                    qtransform="completed_min_max"),
        replay=dataclasses.replace(cfg.replay, capacity=4_000, batch_size=16, min_size=128),
        learner=dataclasses.replace(cfg.learner, optimizer="adamw", learning_rate=1e-3, warmup_updates=20,
                                    updates_per_call=2, reanalyze_fraction=0.5),
        loop=dataclasses.replace(cfg.loop, env_steps=1_000, replay_ratio=0.25, extra_updates=0, eval_every=1_000,
                                 log_every_s=5.0, checkpoint_every_s=120.0),
    )


def atari_cpu() -> Config:
    """Atari at CPU scale: about half an hour per game on a 2-core CPU (the Atari learning
    benchmark, ``benchmarks/learning.py --vs-random``), not the Atari-100k budget.

    EfficientZero's agent shrunk to what two cores train in that time: 64x64 gray frames
    stacked 4, 16 residual channels, batch 32, Gumbel search with 8 simulations over the top
    4 root actions (EfficientZero V2's qtransform), Adam, 30k agent steps at replay ratio
    0.25, reanalysis sweeps that also store the consistency targets (an update then needs
    one representation pass per sample instead of six: 5 updates/s here, against 1.5).
    Evaluation games are capped at 3,000 agent steps (27,000 in the protocol) so that an
    evaluation fits the budget.
    """
    cfg = atari100k()
    return dataclasses.replace(
        cfg,
        preset="atari-cpu",
        env=dataclasses.replace(cfg.env, num_envs=8, num_eval_envs=16, eval_episodes=32, frame_size=64,
                                grayscale=True, eval_max_episode_steps=3_000),
        network=dataclasses.replace(
            cfg.network, channels=16, reduced_channels=4, head_hidden=(32,), lstm_hidden=64,
            projection_hidden=128, projection_out=128, predictor_hidden=64,
        ),
        planner=dataclasses.replace(cfg.planner, search="gumbel", num_simulations=8, max_num_considered_actions=4,
                                    qtransform="completed_min_max"),
        replay=dataclasses.replace(cfg.replay, capacity=30_000, batch_size=32, min_size=1_000, alpha=1.0, beta=1.0,
                                   beta_anneal_updates=7_500),
        learner=dataclasses.replace(cfg.learner, optimizer="adamw", learning_rate=1e-3, warmup_updates=200,
                                    sweep_chunk=1024, flat_optimizer=False, value_loss_weight=0.5,
                                    consistency_loss_weight=2.0, consistency_targets="swept"),
        loop=dataclasses.replace(cfg.loop, env_steps=30_000, replay_ratio=0.25, extra_updates=0, eval_every=10_000,
                                 log_every_s=30.0, checkpoint_every_s=300.0),
    )


def minatar() -> Config:
    """MinAtar (10x10 binary frames, gymnax) in 100k env steps: the sample-efficient regime.

    A small MLP world model over the flattened frame (MinAtar frames are 100 to 1,000 binary
    inputs: an MLP is cheap on a CPU and sees the whole board at once), Gumbel search, many
    envs stepped inside the compiled loop (the env is pure JAX, see agents/loop.py). Replay
    ratio 0.5: on Breakout (seed 0, 2-core CPU) 0.125 reached 5.6 in 2.3 minutes and 0.5
    reached 6.9 in 9 minutes; reanalysis sweeps (5.5 at 0.125), a larger MLP (latent 256,
    two hidden layers: 1.4 at 25k steps) and 32 simulations (5.7 at 25k) did not help.
    """
    return Config(
        preset="minatar",
        env=EnvConfig(id="MinAtar/Breakout", num_envs=16, num_eval_envs=30, eval_episodes=30),
        network=NetworkConfig(
            kind="mlp", latent_dim=128, hidden=(256,), head_hidden=(64,), lstm_hidden=64,
            projection_hidden=128, projection_out=128, predictor_hidden=64,
            value_support=(-10.0, 10.0, 41), reward_support=(-5.0, 5.0, 21),
        ),
        planner=PlannerConfig(search="gumbel", num_simulations=16, discount=0.99, max_num_considered_actions=4),
        replay=ReplayConfig(capacity=100_000, batch_size=128, min_size=1_000, beta_anneal_updates=20_000),
        learner=LearnerConfig(
            optimizer="adamw", learning_rate=1e-3, warmup_updates=200, weight_decay=1e-4, max_grad_norm=5.0,
            td_steps=5, td_age_step=100_000, target_update_interval=200, reanalyze_fraction=0.0, updates_per_call=8,
        ),
        loop=LoopConfig(env_steps=100_000, replay_ratio=0.5, eval_every=25_000, log_every_s=10.0,
                        checkpoint_every_s=120.0),
    )


PRESETS: dict[str, Callable[[], Config]] = {
    "cartpole": cartpole,
    "debug": debug,
    "atari100k": atari100k,
    "atari100k-gumbel": atari100k_gumbel,
    "atari-debug": atari_debug,
    "atari-cpu": atari_cpu,
    "minatar": minatar,
}


def get_preset(name: str) -> Config:
    if name not in PRESETS:
        import difflib

        close = difflib.get_close_matches(name, list(PRESETS), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown preset {name!r} (known: {', '.join(sorted(PRESETS))}){hint}")
    return PRESETS[name]()
