"""The training loop and evaluation, for any agent (:class:`dreamer.agent.Agent`) and any
vector env (:class:`agents.envs.base.VectorEnv`).

    counters = train(cfg, make_agent, agents.envs.make, run_dir)
    returns = evaluate(jax.jit(agent.greedy), params, envs, episodes=32, rng=key, seed=0)

``train`` acts, steps the envs, stores, trains at the replay ratio, evaluates, logs and
checkpoints. The agent's pure functions are jitted here; the loop itself only moves
actions and observations between them and the envs, and does the I/O. It knows nothing
of the agent's insides: the agent state is one pytree that it checkpoints as it is.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
import signal
import time
from typing import Any, Callable, Iterator, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from agents.envs.base import EnvSpec, FunctionalEnv, VectorEnv, game_info
from dreamer import checkpoint as ckpt_lib
from dreamer.agent import Agent, Transition
from dreamer.config import Config, to_dict
from dreamer.logger import Logger, Progress, git_commit, truncate_metrics

MakeAgent = Callable[[Config, EnvSpec], Agent]
MakeEnvs = Callable[[Any, str, int], VectorEnv]

# Config fields a resumed run may change (budget, clocks); anything else must match.
RESUMABLE_FIELDS = ("loop.env_steps", "loop.eval_every", "loop.log_every_s", "loop.checkpoint_every_s",
                    "loop.keep_checkpoints", "loop.thresholds", "loop.stop_when_held")
EVAL_SEED_OFFSET = 10_000  # evaluation envs are seeded apart from the training envs


class NonFiniteLossError(RuntimeError):
    """Training produced a non-finite loss; the last good checkpoint is kept."""


@dataclasses.dataclass
class Counters:
    env_steps: int = 0
    updates: int = 0
    evaluations: int = 0
    episodes: int = 0
    last_eval_return: float = float("nan")
    best_eval_return: float = float("-inf")
    first_reached: dict = dataclasses.field(default_factory=dict)  # threshold -> {"env_steps", "seconds"} of its first crossing
    held: int = 0  # evaluations in a row at or above loop.thresholds[0]
    wall_time: float = 0.0
    stopped: str = ""  # why the run ended before its budget ("" if it did not)


def temperature_at(cfg: Config, env_steps: int) -> float:
    """Action temperature from ``loop.temperature_schedule`` ((progress limit, temperature), ...)."""
    progress = env_steps / cfg.loop.env_steps
    # float(): an int from a CLI schedule would be traced apart from floats (a second act compile)
    for limit, temp in cfg.loop.temperature_schedule:
        if progress < limit:
            return float(temp)
    return float(cfg.loop.temperature_schedule[-1][1])


@dataclasses.dataclass
class EvalResult:
    """Whole games played by :func:`evaluate`, in order (each env's k-th game, env by env)."""

    returns: list[float]
    capped: list[bool]  # the game was cut by the step cap (a truncation), not played out
    action_counts: np.ndarray  # [A] how often each action was played, over every eval step

    def metrics(self) -> dict[str, float]:
        """The ``eval/*`` metrics: return statistics, the capped fraction and the action histogram."""
        frac = self.action_counts / max(self.action_counts.sum(), 1)
        out = {"eval/return_mean": float(np.mean(self.returns)), "eval/return_std": float(np.std(self.returns)),
               "eval/episodes": len(self.returns), "eval/capped_fraction": float(np.mean(self.capped))}
        out.update({f"eval/action_{a}": float(f) for a, f in enumerate(frac)})
        return out


def evaluate(greedy: Callable, params, envs: VectorEnv, episodes: int, rng: jnp.ndarray, seed: int) -> EvalResult:
    """Plays ``episodes`` whole games with ``greedy(params, rng, obs) -> ActOutput``.

    Each env contributes its games in order, the same number from every env, so short
    games are not favoured by taking whichever finish first.
    """
    per_env = -(-episodes // envs.num_envs)
    done: list[list[tuple[float, bool]]] = [[] for _ in range(envs.num_envs)]
    counts = np.zeros(envs.spec.num_actions, np.int64)
    envs.reset(seed)
    while min(len(d) for d in done) < per_env:
        rng, key = jax.random.split(rng)
        action = np.asarray(greedy(params, key, jnp.asarray(envs.observation())).action)
        counts += np.bincount(action[[len(d) < per_env for d in done]], minlength=counts.size)
        _, _, _, truncated, info = envs.step(action)
        game_end, game_return = game_info(info)
        for i in np.flatnonzero(game_end):
            if len(done[i]) < per_env:
                done[i].append((float(game_return[i]), bool(truncated[i])))
    games = [g for k in range(per_env) for d in done for g in d[k : k + 1]][:episodes]
    return EvalResult([r for r, _ in games], [c for _, c in games], counts)


class _Run:
    """One training run: the agent's jitted functions, its state, the envs and the run directory."""

    def __init__(self, cfg: Config, make_agent: MakeAgent, make_envs: MakeEnvs, run_dir: str, *,
                 progress: bool, tensorboard: bool):
        self.cfg, self.run_dir = cfg, run_dir
        os.makedirs(run_dir, exist_ok=True)
        self.envs = make_envs(cfg.env, "train", cfg.seed)
        self.eval_envs = make_envs(cfg.env, "eval", cfg.seed + EVAL_SEED_OFFSET)
        self.agent = agent = make_agent(cfg, self.envs.spec)
        self.act = jax.jit(agent.act)
        self.greedy = jax.jit(agent.greedy)
        self.observe = jax.jit(agent.observe, donate_argnums=0)
        self.train_step = jax.jit(agent.train, donate_argnums=0)
        agent_rng, self.rng = jax.random.split(jax.random.PRNGKey(cfg.seed))
        self.state = jax.jit(agent.init)(agent_rng)
        self.counters = Counters()
        self.games = np.zeros(2)  # training games ended since the last log, and their return sum
        self.train_metrics: dict = {}  # the last train call's metrics (device arrays until logged)
        self.act_sums: dict = {}  # act metrics summed over the vector steps since the last log
        self.act_steps = 0
        self.fused: FusedEnv | None = None  # the carry of a pure JAX env (see _fused_steps)
        self.checkpointer = ckpt_lib.Checkpointer(run_dir, keep=cfg.loop.keep_checkpoints)
        self.resumed = False
        if self.checkpointer.latest() is not None:
            snap, meta = self.checkpointer.restore(
                self._snapshot(), expected_config=to_dict(cfg), allowed_differences=RESUMABLE_FIELDS
            )
            self.state, self.rng = snap["agent"], snap["rng"]
            self.counters = Counters(**meta["counters"])
            self.resumed = True
            truncate_metrics(os.path.join(run_dir, "metrics.jsonl"), self.counters.env_steps)
        self.logger = Logger(run_dir, tensorboard=tensorboard, time_offset=self.counters.wall_time)
        self.progress = Progress(cfg.loop.env_steps, self.counters.env_steps, enabled=progress)
        with open(os.path.join(run_dir, "config.json"), "w") as f:
            json.dump(to_dict(cfg), f, indent=2)
        with open(os.path.join(run_dir, "run.json"), "w") as f:
            json.dump({"commit": git_commit(), "jax": jax.__version__, "devices": [str(d) for d in jax.devices()]}, f, indent=2)

    # -- checkpoints -------------------------------------------------------------------------
    def _snapshot(self) -> dict:
        return {"agent": self.state, "rng": self.rng}

    def save(self) -> None:
        """Checkpoints the run (after checking the last train metrics are finite)."""
        self.check_finite(self.train_metrics)
        c = self.counters
        c.wall_time = self.logger.elapsed
        meta = {"config": to_dict(self.cfg), "counters": dataclasses.asdict(c), "commit": git_commit()}
        self.checkpointer.save(c.env_steps, self._snapshot(), meta)

    # -- pieces --------------------------------------------------------------------------------
    def updates_due(self) -> int:
        """Updates owed at the replay ratio, counted from when training could start."""
        start = self.cfg.replay.min_size
        steps = self.counters.env_steps
        if steps < start:
            return 0
        return int(self.cfg.loop.replay_ratio * (steps - start)) - self.counters.updates

    def train_once(self) -> dict:
        self.state, metrics = self.train_step(self.state)
        self.counters.updates += self.agent.updates_per_call
        return metrics

    def run_evaluation(self) -> float:
        cfg, c = self.cfg, self.counters
        self.rng, key = jax.random.split(self.rng)
        result = evaluate(self.greedy, self.agent.params(self.state), self.eval_envs, cfg.env.eval_episodes, key,
                          cfg.seed + EVAL_SEED_OFFSET + c.evaluations)
        c.evaluations += 1
        mean = float(np.mean(result.returns))
        c.last_eval_return = mean
        c.best_eval_return = max(c.best_eval_return, mean)
        for threshold in cfg.loop.thresholds:
            if mean >= threshold and f"{threshold:g}" not in c.first_reached:
                c.first_reached[f"{threshold:g}"] = {"env_steps": c.env_steps, "seconds": round(self.logger.elapsed, 1)}
        if cfg.loop.thresholds:
            c.held = c.held + 1 if mean >= cfg.loop.thresholds[0] else 0
        record = self.logger.write(c.env_steps, c.updates, result.metrics())
        self.progress.show(record, c)
        return mean

    def check_finite(self, metrics: dict) -> None:
        """Stops the run on a non-finite loss, naming the update and the loss terms."""
        bad = [k for k, v in metrics.items() if k.startswith("loss/") and not np.isfinite(float(v))]
        if bad:
            stats = {k: float(v) for k, v in metrics.items()}
            with open(os.path.join(self.run_dir, "nonfinite_batch.json"), "w") as f:
                json.dump({"updates": self.counters.updates, "env_steps": self.counters.env_steps, "metrics": stats}, f,
                          indent=2)
            raise NonFiniteLossError(
                f"non-finite {', '.join(bad)} by update {self.counters.updates}; "
                f"last good checkpoint kept in {self.checkpointer.directory}; batch statistics in nonfinite_batch.json"
            )

    def log(self) -> dict:
        """Writes the latest train metrics, speeds and the training games' mean return since
        the last log (the one host sync of the training loop)."""
        c = self.counters
        self.check_finite(self.train_metrics)
        self.drain()
        metrics = {k: float(v) for k, v in self.train_metrics.items()}
        elapsed = max(self.logger.elapsed, 1e-9)
        metrics["speed/env_steps_per_s"] = c.env_steps / elapsed
        metrics["speed/updates_per_s"] = c.updates / elapsed
        for name, total in self.act_sums.items():
            metrics[name] = float(total / max(self.act_steps, 1))
        self.act_sums, self.act_steps = {}, 0
        games, returns = self.games
        if games:
            c.episodes += int(games)
            metrics["train/episode_return"] = float(returns / games)
        self.games = np.zeros(2)
        record = self.logger.write(c.env_steps, c.updates, metrics)
        self.progress.show(record, c)
        return record

    def add_act_metrics(self, sums: dict, steps: int) -> None:
        for name, value in sums.items():
            self.act_sums[name] = self.act_sums.get(name, 0.0) + float(value)
        self.act_steps += steps

    def total_updates(self) -> int:
        cfg = self.cfg
        collected = int(cfg.loop.replay_ratio * max(cfg.loop.env_steps - cfg.replay.min_size, 0))
        return collected + cfg.loop.extra_updates

    # -- the loop ------------------------------------------------------------------------------
    def finished(self) -> bool:
        """The run has nothing left to do: its budget is spent, or it stopped early and its
        stop rule still holds (a resumed run that stopped early stays stopped)."""
        c, loop = self.counters, self.cfg.loop
        held = bool(c.stopped) and loop.stop_when_held > 0 and c.held >= loop.stop_when_held
        return held or (c.env_steps >= loop.env_steps and c.updates >= self.total_updates())

    def run(self) -> Counters:
        with install_signal_handlers() as stop:
            if not self.finished():
                self.collect(stop)
            if stop:
                print(f"signal {stop.signum}: checkpointing at {self.counters.env_steps} env steps and stopping", flush=True)
            elif self.counters.env_steps >= self.cfg.loop.env_steps and self.cfg.loop.extra_updates:
                while self.counters.updates < self.total_updates() and not stop:
                    self.train_metrics = self.train_once()
                self.run_evaluation()
            self.log()
            self.progress.close()
            self.save()
        c = self.counters
        c.wall_time = self.logger.elapsed
        summary = dataclasses.asdict(c)
        summary["best_eval_return"] = None if math.isinf(c.best_eval_return) else c.best_eval_return
        with open(os.path.join(self.run_dir, "summary.json"), "w") as f:
            json.dump(summary, f, indent=2)
        self.logger.close()
        self.close()
        return c

    def close(self) -> None:
        """Closes the training and evaluation envs."""
        for envs in (self.envs, self.eval_envs):
            envs.close()

    def collect(self, stop) -> None:
        """Acts, stores and trains until the env-step budget, evaluating, logging and
        checkpointing on their clocks between vector steps (or fused chunks of them)."""
        cfg, c = self.cfg, self.counters
        steps = self._fused_steps() if self.envs.functional is not None else self._host_steps()
        next_eval = (c.env_steps // cfg.loop.eval_every + 1) * cfg.loop.eval_every
        last_log = last_save = time.time()
        for n in steps:
            self.progress.update(n)
            if c.env_steps >= next_eval or c.env_steps >= cfg.loop.env_steps:
                next_eval = (c.env_steps // cfg.loop.eval_every + 1) * cfg.loop.eval_every
                self.run_evaluation()
                if cfg.loop.stop_when_held and c.held >= cfg.loop.stop_when_held:
                    c.stopped = (f"the evaluation held {cfg.loop.thresholds[0]:g} for {c.held} evaluation"
                                 f"{'s' if c.held > 1 else ''} in a row")
                    break
            if time.time() - last_log >= cfg.loop.log_every_s:
                last_log = time.time()
                self.log()
            if time.time() - last_save >= cfg.loop.checkpoint_every_s:
                last_save = time.time()
                self.save()
            if stop or c.env_steps >= cfg.loop.env_steps:
                break
        self.train_owed(stop)

    def train_owed(self, stop=None) -> None:
        """Runs the train calls owed at the replay ratio."""
        while not stop and self.updates_due() >= self.agent.updates_per_call:
            self.train_metrics = self.train_once()

    def _host_steps(self):
        """Vector steps of a host env: act (jitted), train what is owed, step the envs, store."""
        cfg, c, envs = self.cfg, self.counters, self.envs
        frames = envs.reset()
        first = np.ones(envs.num_envs, bool)
        while True:
            self.rng, key = jax.random.split(self.rng)
            out = self.act(self.state, key, jnp.asarray(envs.observation()), temperature_at(cfg, c.env_steps))
            self.train_owed()  # dispatched before the envs step, so both run at once
            action, act_means = jax.device_get((out.action, _means(out.metrics)))
            self.add_act_metrics(act_means, 1)
            next_frames, reward, terminated, truncated, info = envs.step(action)
            self.state = self.observe(self.state, Transition(frames, action, reward, terminated, truncated, first, out))
            first = terminated | truncated
            frames = next_frames
            c.env_steps += envs.num_envs
            game_end, game_return = game_info(info)
            self.games += np.array([game_end.sum(), game_return[game_end].sum()])
            yield envs.num_envs

    def _fused_steps(self):
        """Chunks of a pure JAX env's vector steps, each one compiled program: act, env step
        and store for ``k`` vector steps, then the train calls they owe. No host work and no
        host sync per chunk: the games ended and the act metrics add up on the device until
        :meth:`log` reads them (:meth:`drain`)."""
        cfg, c, fenv = self.cfg, self.counters, self.envs.functional
        per_call, n = self.agent.updates_per_call, fenv.num_envs
        k = max(1, min(math.ceil(per_call / (n * cfg.loop.replay_ratio)), cfg.loop.eval_every // n))
        calls = max(1, round(k * n * cfg.loop.replay_ratio / per_call))
        self.rng, init_key, key = jax.random.split(self.rng, 3)
        env_state, frame = jax.jit(fenv.init)(init_key)
        act_shape = jax.eval_shape(self.agent.act, self.state, key, fenv.observation(env_state), 1.0)
        self._act_names = tuple(act_shape.metrics or {})
        self.fused = FusedEnv(env_state, frame, jnp.ones(n, bool), key, *self._zero_stats())
        self._fused_steps_since_drain = 0
        chunk = {t: jax.jit(functools.partial(fused_chunk, self.agent, fenv, k, t), donate_argnums=(0, 1))
                 for t in (0, calls)}
        while True:
            c.env_steps += k * n
            train = calls if self.updates_due() >= self.agent.updates_per_call * calls else 0
            self.state, self.fused, metrics = chunk[train](self.state, self.fused, temperature_at(cfg, c.env_steps - k * n))
            if train:
                c.updates += calls * per_call
                self.train_metrics = metrics
            self.train_owed()
            self._fused_steps_since_drain += k
            yield k * n

    def drain(self) -> None:
        """Moves the device-side game counts and act metric sums of a fused env to the host."""
        if self.fused is None:
            return
        games, sums = jax.device_get((self.fused.games, self.fused.act_sums))
        self.games += games
        self.add_act_metrics(sums, self._fused_steps_since_drain)
        games, act_sums = self._zero_stats()  # new buffers: the chunks donate the carry
        self.fused = self.fused._replace(games=games, act_sums=act_sums)
        self._fused_steps_since_drain = 0

    def _zero_stats(self) -> tuple:
        return jnp.zeros(2, jnp.float32), {name: jnp.zeros((), jnp.float32) for name in self._act_names}


def _means(metrics) -> dict:
    """Batch means of an act's per-env metrics (``{}`` when it has none)."""
    return {k: jnp.mean(v) for k, v in (metrics or {}).items()}


class FusedEnv(NamedTuple):
    """The loop's carry for a pure JAX env: its state, the frame to store next, the ``first``
    flags, the key for acting and stepping, ``[games ended, their return sum]`` and the
    summed act metrics."""

    state: Any
    frame: Any
    first: Any
    key: Any
    games: Any
    act_sums: Any  # {name: sum over steps of the act metrics' batch means}


def fused_chunk(agent: Agent, fenv: FunctionalEnv, steps: int, train_calls: int, state, env: FusedEnv, temperature):
    """``steps`` vector steps (act, env step, observe) then ``train_calls`` train calls, as one
    pure function: ``(agent state, env carry, temperature) -> (state, carry, mean train metrics)``."""

    def one(carry, _):
        state, env = carry
        key, act_key, env_key = jax.random.split(env.key, 3)
        out = agent.act(state, act_key, fenv.observation(env.state), temperature)
        env_state, st = fenv.step(env_key, env.state, out.action)
        state = agent.observe(state, Transition(env.frame, out.action, st.reward, st.terminated, st.truncated,
                                                env.first, out))
        ended = jnp.stack([jnp.sum(st.game_end), jnp.sum(jnp.where(st.game_end, st.game_return, 0.0))])
        sums = jax.tree_util.tree_map(jnp.add, env.act_sums, _means(out.metrics))
        env = FusedEnv(env_state, st.frame, st.terminated | st.truncated, key, env.games + ended, sums)
        return (state, env), None

    (state, env), _ = jax.lax.scan(one, (state, env), None, length=steps)
    if not train_calls:
        return state, env, {}
    state, metrics = jax.lax.scan(lambda s, _: agent.train(s), state, None, length=train_calls)
    return state, env, jax.tree_util.tree_map(jnp.mean, metrics)


def restore_params(agent: Agent, cfg: Config, run_dir: str) -> tuple[Any, dict]:
    """The params and counters of ``run_dir``'s latest checkpoint, without building envs or a replay.

    Raises :class:`~dreamer.checkpoint.CheckpointError` (one line) when there is none or it
    does not match ``cfg``.
    """
    abstract = jax.eval_shape(agent.init, jax.random.PRNGKey(0))
    target = {"agent": abstract, "rng": jax.eval_shape(lambda: jax.random.PRNGKey(0))}
    checkpointer = ckpt_lib.Checkpointer(run_dir, keep=cfg.loop.keep_checkpoints)
    if checkpointer.latest() is None:
        raise ckpt_lib.NoCheckpointError(f"no checkpoint in {run_dir!r}")
    snap, meta = checkpointer.restore(target, expected_config=to_dict(cfg), allowed_differences=RESUMABLE_FIELDS)
    return agent.params(snap["agent"]), meta["counters"]


def open_run(cfg: Config, make_agent: MakeAgent, make_envs: MakeEnvs, run_dir: str, *, progress: bool = True,
             tensorboard: bool = True) -> _Run:
    """Builds (or resumes, when ``run_dir`` holds a checkpoint) a run without starting it."""
    return _Run(cfg, make_agent, make_envs, run_dir, progress=progress, tensorboard=tensorboard)


def train(cfg: Config, make_agent: MakeAgent, make_envs: MakeEnvs, run_dir: str, *, progress: bool = True,
          tensorboard: bool = True) -> Counters:
    """Trains ``make_agent(cfg, spec)`` on ``make_envs(cfg.env, mode, seed)`` into ``run_dir``
    (resuming it if it holds a checkpoint); returns the final counters."""
    return open_run(cfg, make_agent, make_envs, run_dir, progress=progress, tensorboard=tensorboard).run()


class ShutdownFlag:
    """Yielded by :func:`install_signal_handlers`: true once SIGINT / SIGTERM arrived (``signum``)."""

    signum: int | None = None

    def __bool__(self) -> bool:
        return self.signum is not None


@contextlib.contextmanager
def install_signal_handlers() -> Iterator[ShutdownFlag]:
    """Within the block, the first SIGINT / SIGTERM sets the yielded flag instead of stopping the
    process, so the loop can checkpoint and exit; it also puts the previous handlers back, so a
    second signal acts as usual (a second Ctrl-C raises ``KeyboardInterrupt``). Main thread only."""
    flag, previous = ShutdownFlag(), {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def put_back(*_: Any) -> None:
        for sig, old in previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)

    def handler(signum: int, frame: Any) -> None:
        flag.signum = signum
        put_back()

    try:
        for sig in previous:
            signal.signal(sig, handler)
        yield flag
    finally:
        put_back()
