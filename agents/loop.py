"""The one Python loop over env steps: act, store, train at the replay ratio, evaluate, log, save.

All compute lives in three jitted programs (act, replay add, train); the loop only moves
actions and observations between them and the envs, and does the I/O.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from dreamer import checkpoint as ckpt_lib
from dreamer import replay as replay_lib
from dreamer.config import Config, to_dict
from dreamer.learner import TrainState, init_train_state, make_act_fn, make_train_fn
from dreamer.logger import Logger, git_commit, truncate_metrics
from dreamer.networks import LearnedModel


def temperature_at(cfg: Config, env_steps: int) -> float:
    """Action temperature from ``loop.temperature_schedule`` ((progress limit, temperature), ...)."""
    progress = env_steps / cfg.loop.env_steps
    # float(): an int from a CLI schedule would be traced apart from floats (a second act compile)
    for limit, temp in cfg.loop.temperature_schedule:
        if progress < limit:
            return float(temp)
    return float(cfg.loop.temperature_schedule[-1][1])


def is_atari(env_id: str) -> bool:
    """True for Atari game ids ("Breakout", "ms_pacman", "ALE/Pong-v5"); False for other gymnasium ids."""
    import gymnasium as gym

    if env_id in gym.registry and not env_id.startswith("ALE/"):
        return False
    from agents.envs import atari

    try:
        atari.ale_game_id(env_id)
    except ValueError:
        return False
    return True


def make_envs(cfg: Config, *, evaluation: bool, seed: int):
    """Training or evaluation vector envs for ``cfg.env.id`` (Atari or any gymnasium id)."""
    if is_atari(cfg.env.id):
        from agents.envs import atari

        return atari.make_envs(cfg.env, evaluation=evaluation, seed=seed)
    from agents.envs.gym import GymEnvs

    n = cfg.env.num_eval_envs if evaluation else cfg.env.num_envs
    cap = cfg.env.eval_max_episode_steps if evaluation else cfg.env.max_episode_steps
    return GymEnvs(cfg.env.id, n, seed, max_episode_steps=cap)


def observation_spec(envs) -> tuple[tuple[int, ...], Any]:
    """The network's observation shape (frames stacked on the channel axis) and dtype."""
    shape = tuple(envs.frame_shape)
    if envs.frame_stack > 1:
        shape = shape[:-1] + (shape[-1] * envs.frame_stack,)
    return shape, envs.frame_dtype


def current_obs(envs, frames: np.ndarray) -> np.ndarray:
    return envs.stacked_obs() if envs.frame_stack > 1 else frames


def evaluate(act: Callable, params, envs, episodes: int, rng: jnp.ndarray, seed: int) -> list[float]:
    """Plays ``episodes`` whole episodes greedily (argmax of the search policy).

    Each env contributes its episodes in order, the same number from every env, so
    short episodes are not favoured by taking whichever finish first.
    """
    per_env = -(-episodes // envs.num_envs)
    done: list[list[float]] = [[] for _ in range(envs.num_envs)]
    frames = envs.reset(seed) if _reset_takes_seed(envs) else envs.reset()
    while min(len(d) for d in done) < per_env:
        rng, key = jax.random.split(rng)
        out = act(params, key, jnp.asarray(current_obs(envs, frames)), 0.0)
        action = np.asarray(jnp.argmax(out.policy, axis=-1))
        frames, _, _, _, info = envs.step(action)
        for i in np.flatnonzero(info["game_end"]):
            if len(done[i]) < per_env:
                done[i].append(float(info["game_return"][i]))
    returns = [r for k in range(per_env) for d in done for r in d[k : k + 1]]
    return returns[:episodes]


def _reset_takes_seed(envs) -> bool:
    import inspect

    return "seed" in inspect.signature(envs.reset).parameters


# Config fields a resumed run may change (budget, clocks); anything else must match.
RESUMABLE_FIELDS = ("loop.env_steps", "loop.eval_every", "loop.log_every_s", "loop.checkpoint_every_s", "loop.keep_checkpoints", "loop.stop_at_return")


class NonFiniteLossError(RuntimeError):
    """Training produced a non-finite loss or parameter; the last good checkpoint is kept."""


@dataclasses.dataclass
class Counters:
    env_steps: int = 0
    updates: int = 0
    evaluations: int = 0
    episodes: int = 0
    last_eval_return: float = float("nan")
    best_eval_return: float = float("-inf")
    first_reached_at: int | None = None  # env steps when the eval mean first reached loop.stop_at_return
    first_reached_time: float | None = None
    wall_time: float = 0.0


class Trainer:
    """Owns the envs, the jitted programs and the run directory for one training run."""

    def __init__(self, cfg: Config, run_dir: str, *, progress: bool = True, tensorboard: bool = True, log: bool = True):
        """``log=False`` opens the run read-only (for evaluation): nothing in it is rewritten."""
        self.cfg = cfg
        self.run_dir = run_dir
        self.progress = progress
        os.makedirs(run_dir, exist_ok=True)
        self.envs = make_envs(cfg, evaluation=False, seed=cfg.seed)
        self.eval_envs = make_envs(cfg, evaluation=True, seed=cfg.seed + 10_000)
        obs_shape, obs_dtype = observation_spec(self.envs)
        self.model = LearnedModel(cfg.network, obs_shape, self.envs.num_actions, obs_dtype)
        self._act = jax.jit(make_act_fn(self.model, cfg))
        self._eval_act = jax.jit(make_act_fn(self.model, cfg, evaluation=True))
        self._add = jax.jit(replay_lib.add, donate_argnums=0)
        self._train = jax.jit(make_train_fn(self.model, cfg), donate_argnums=(0, 1))
        rng = jax.random.PRNGKey(cfg.seed)
        state_rng, self.rng = jax.random.split(rng)
        self.state: TrainState = init_train_state(self.model, cfg, state_rng)
        self.replay = replay_lib.init(
            cfg.env.num_envs, cfg.replay.capacity, self.envs.frame_shape, self.envs.frame_dtype, self.envs.num_actions
        )
        self.counters = Counters()
        self.checkpointer = ckpt_lib.Checkpointer(run_dir, keep=cfg.loop.keep_checkpoints)
        self.resumed = False
        if self.checkpointer.latest() is not None:
            self._restore()
        if log:
            if self.resumed:
                truncate_metrics(os.path.join(run_dir, "metrics.jsonl"), self.counters.env_steps)
            self.logger = Logger(run_dir, tensorboard=tensorboard, time_offset=self.counters.wall_time)
            self._write_run_info()

    # -- checkpoints -------------------------------------------------------------------------
    def _snapshot(self) -> dict:
        return {"train": self.state, "replay": self.replay, "rng": self.rng}

    def save(self) -> None:
        c = self.counters
        c.wall_time = self.logger.elapsed
        meta = {"config": to_dict(self.cfg), "counters": dataclasses.asdict(c), "commit": git_commit()}
        self.checkpointer.save(c.env_steps, self._snapshot(), meta)

    def _restore(self) -> None:
        """Continues from the run directory's latest complete checkpoint (same config, longer budget allowed)."""
        snap, meta = self.checkpointer.restore(
            self._snapshot(), expected_config=to_dict(self.cfg), allowed_differences=RESUMABLE_FIELDS
        )
        self.state, self.replay, self.rng = snap["train"], snap["replay"], snap["rng"]
        self.counters = Counters(**meta["counters"])
        self.resumed = True

    def _write_run_info(self) -> None:
        with open(os.path.join(self.run_dir, "config.json"), "w") as f:
            json.dump(to_dict(self.cfg), f, indent=2)
        with open(os.path.join(self.run_dir, "run.json"), "w") as f:
            json.dump({"commit": git_commit(), "jax": jax.__version__, "devices": [str(d) for d in jax.devices()]}, f, indent=2)

    # -------------------------------------------------------------------------------------
    def updates_due(self) -> int:
        """Updates owed at the replay ratio, counted from when training could start."""
        start = self.cfg.replay.min_size
        steps = self.counters.env_steps
        if steps < start:
            return 0
        return int(self.cfg.loop.replay_ratio * (steps - start)) - self.counters.updates

    def run_evaluation(self) -> float:
        cfg = self.cfg
        self.rng, key = jax.random.split(self.rng)
        returns = evaluate(self._eval_act, self.state.params, self.eval_envs, cfg.env.eval_episodes, key, cfg.seed + 10_000 + self.counters.evaluations)
        c = self.counters
        c.evaluations += 1
        mean = float(np.mean(returns))
        c.last_eval_return = mean
        c.best_eval_return = max(c.best_eval_return, mean)
        target = cfg.loop.stop_at_return
        if target is not None and mean >= target and c.first_reached_at is None:
            c.first_reached_at = c.env_steps
            c.first_reached_time = self.logger.elapsed
        self.logger.write(c.env_steps, c.updates, {"eval/return_mean": mean, "eval/return_std": float(np.std(returns)), "eval/episodes": len(returns)})
        return mean

    def run(self) -> Counters:
        cfg, c = self.cfg, self.counters
        frames = self.envs.reset()
        first = np.ones(cfg.env.num_envs, bool)
        next_eval = (c.env_steps // cfg.loop.eval_every + 1) * cfg.loop.eval_every
        last_log = time.time()
        bar = _progress_bar(cfg.loop.env_steps, self.progress)
        bar.update(c.env_steps)
        last_save = time.time()
        with ckpt_lib.install_signal_handlers() as stop:
            self._loop(bar, stop, frames, first, next_eval, last_log, last_save)
        bar.close()
        c.wall_time = self.logger.elapsed
        self._write_summary()
        self.logger.close()
        return c

    def _check_finite(self, metrics: dict) -> None:
        """Stops the run on a non-finite loss, naming the update and the loss terms."""
        bad = [k for k, v in metrics.items() if k.startswith("loss/") and not np.isfinite(float(v))]
        if bad:
            stats = {k: float(v) for k, v in metrics.items()}
            with open(os.path.join(self.run_dir, "nonfinite_batch.json"), "w") as f:
                json.dump({"updates": self.counters.updates, "env_steps": self.counters.env_steps, "metrics": stats}, f, indent=2)
            raise NonFiniteLossError(
                f"non-finite {', '.join(bad)} at update {self.counters.updates}; "
                f"last good checkpoint kept in {self.checkpointer.directory}; batch statistics in nonfinite_batch.json"
            )

    def _loop(self, bar, stop, frames, first, next_eval, last_log, last_save) -> None:
        cfg, c = self.cfg, self.counters
        n = cfg.env.num_envs
        per_call = cfg.learner.updates_per_call
        train_metrics: dict = {}
        recent_returns: list[float] = []
        while c.env_steps < cfg.loop.env_steps and not stop:
            self.rng, key = jax.random.split(self.rng)
            obs = current_obs(self.envs, frames)
            out = self._act(self.state.params, key, jnp.asarray(obs), temperature_at(cfg, c.env_steps))
            action = np.asarray(out.action)
            # Dispatch training before stepping the envs, so both run at once.
            due, trained = self.updates_due(), False
            while due >= per_call:
                self.state, self.replay, train_metrics = self._train(self.state, self.replay)
                c.updates += per_call
                due -= per_call
                trained = True
            next_frames, reward, terminated, truncated, info = self.envs.step(action)
            if trained:
                self._check_finite(train_metrics)
            self.replay = self._add(
                self.replay, frames, action, reward, terminated, truncated, first, out.policy, out.root_value
            )
            first = terminated | truncated
            frames = next_frames
            c.env_steps += n
            c.episodes += len(info["episode_returns"])
            recent_returns.extend(info["episode_returns"])
            bar.update(n)
            if c.env_steps >= next_eval or c.env_steps >= cfg.loop.env_steps:
                next_eval += cfg.loop.eval_every
                self.run_evaluation()
                if cfg.loop.stop_at_return is not None and c.first_reached_at is not None:
                    break
            if time.time() - last_log >= cfg.loop.log_every_s:
                last_log = time.time()
                record = self._log(train_metrics, recent_returns)
                recent_returns = []
                bar.set_postfix(
                    updates=c.updates,
                    ups=f"{record.get('speed/updates_per_s', 0):.1f}",
                    eval=f"{c.last_eval_return:.1f}",
                )
            if time.time() - last_save >= cfg.loop.checkpoint_every_s:
                last_save = time.time()
                self.save()
        while not stop and self.updates_due() >= per_call:  # what the last env steps are owed
            self.state, self.replay, train_metrics = self._train(self.state, self.replay)
            c.updates += per_call
        if stop:
            print(f"signal {stop.signum}: checkpointing at {c.env_steps} env steps and stopping", flush=True)
        elif c.env_steps >= cfg.loop.env_steps and cfg.loop.extra_updates:
            while c.updates < self._total_updates() and not stop:
                self.state, self.replay, train_metrics = self._train(self.state, self.replay)
                c.updates += per_call
            self.run_evaluation()
        self._log(train_metrics, recent_returns)
        self.save()

    def _total_updates(self) -> int:
        cfg = self.cfg
        collected = int(cfg.loop.replay_ratio * max(cfg.loop.env_steps - cfg.replay.min_size, 0))
        return collected + cfg.loop.extra_updates

    def _log(self, train_metrics: dict, recent_returns: list[float]) -> dict:
        c = self.counters
        metrics = {k: float(v) for k, v in train_metrics.items()}
        elapsed = max(self.logger.elapsed, 1e-9)
        metrics["speed/env_steps_per_s"] = c.env_steps / elapsed
        metrics["speed/updates_per_s"] = c.updates / elapsed
        if recent_returns:
            metrics["train/episode_return"] = float(np.mean(recent_returns))
        return self.logger.write(c.env_steps, c.updates, metrics)

    def _write_summary(self) -> None:
        c = self.counters
        summary = dataclasses.asdict(c)
        summary["best_eval_return"] = None if math.isinf(c.best_eval_return) else c.best_eval_return
        with open(os.path.join(self.run_dir, "summary.json"), "w") as f:
            json.dump(summary, f, indent=2)


def _progress_bar(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="step", disable=not enabled, dynamic_ncols=True, desc="env steps")
