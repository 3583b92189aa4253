"""The training loop and evaluation, for any agent (:class:`dreamer.agent.Agent`) and any
vector env (:class:`agents.envs.base.VectorEnv`).

    counters = train(cfg, make_agent, agents.envs.make, run_dir)
    groups = train_runs([cfg.replace(seed=s) for s in (0, 1, 2)], make_agent, agents.envs.make, run_dirs)
    returns = evaluate(jax.jit(agent.greedy), params, envs, episodes=32, rng=key, seed=0)

``train`` acts, steps the envs, stores, trains at the replay ratio, evaluates, logs and
checkpoints. The agent's pure functions are jitted here; the loop itself only moves
actions and observations between them and the envs, and does the I/O. It knows nothing
of the agent's insides: the agent state is one pytree that it checkpoints as it is.

**Runs side by side.** With a pure JAX env (:class:`~agents.envs.base.FunctionalEnv`),
``train_runs`` trains several seeds of one config as one compiled program: the agent's
functions, the env and the evaluation are ``jax.vmap``-ed over the runs (axis name
:data:`~dreamer.agent.RUNS_AXIS`), and the runs step in lockstep. Each run keeps its own
run directory (config, metrics, checkpoints, summary) exactly as ``train`` writes it, so a
run of a group can be resumed, plotted or evaluated alone; with the same seed it follows the
run that ``train`` makes (the same keys, chunks and evaluations), up to float rounding.
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
from dreamer import sharding
from dreamer.agent import RUNS_AXIS, Agent, Transition
from dreamer.config import Config, config_differences, to_dict
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


def schedule_at(schedule: tuple[tuple[float, float], ...], progress: float) -> float:
    """The value of a ``((progress limit, value), ...)`` schedule at ``progress`` (the share
    of ``loop.env_steps`` done): the first pair whose limit exceeds it, else the last."""
    # float(): an int from a CLI schedule would be traced apart from floats (a second compile)
    for limit, value in schedule:
        if progress < limit:
            return float(value)
    return float(schedule[-1][1])


def temperature_at(cfg: Config, env_steps: int) -> float:
    """Action temperature from ``loop.temperature_schedule`` ((progress limit, temperature), ...)."""
    return schedule_at(cfg.loop.temperature_schedule, env_steps / cfg.loop.env_steps)


def epsilon_at(cfg: Config, env_steps: int) -> float:
    """Exploration rate from ``loop.epsilon_schedule`` (0 when it is empty)."""
    schedule = cfg.loop.epsilon_schedule
    return schedule_at(schedule, env_steps / cfg.loop.env_steps) if schedule else 0.0


def explore(key: jnp.ndarray, action: jnp.ndarray, epsilon, num_actions: int) -> jnp.ndarray:
    """``action`` ``[N]`` with each entry replaced, with probability ``epsilon``, by a uniformly
    random action: epsilon-greedy exploration around any agent's choice."""
    coin, pick = jax.random.split(key)
    random = jax.random.randint(pick, action.shape, 0, num_actions, action.dtype)
    return jnp.where(jax.random.uniform(coin, action.shape) < epsilon, random, action)


def explore_key(act_key: jnp.ndarray) -> jnp.ndarray:
    """The key of :func:`explore` beside the key an act call takes: folded from it, so that
    a run without exploration draws exactly the keys it drew before exploration existed."""
    return jax.random.fold_in(act_key, 1)


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

    @classmethod
    def from_arrays(cls, returns, capped, counts, episodes: int) -> "EvalResult":
        """From :func:`play_games`' arrays (``[E, per_env]``, ``[E, per_env]``, ``[A]``), in
        :func:`evaluate`'s order: every env's first game, then every env's second, ..."""
        returns, capped = np.asarray(returns).T.reshape(-1), np.asarray(capped).T.reshape(-1)
        return cls([float(r) for r in returns[:episodes]], [bool(c) for c in capped[:episodes]],
                   np.asarray(counts, np.int64))


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


def play_games(greedy: Callable, fenv: FunctionalEnv, per_env: int, params, rng: jnp.ndarray, seed, *,
               on_state: bool = False) -> tuple:
    """:func:`evaluate` as one pure function of a :class:`~agents.envs.base.FunctionalEnv`:
    ``per_env`` whole games in each of its envs with ``greedy(params, rng, obs)``, in a
    ``lax.while_loop``, so it jits and vmaps (over runs) with the rest. With ``on_state``,
    ``greedy`` takes the env state instead of the observation (an agent planning in the
    env's own simulator, ``Agent.acts_on == "env_state"``).

    The envs start from ``PRNGKey(seed)`` and take their keys as a host env over the same
    functions does (``key, sub = split(key)`` per reset and step); ``rng`` gives the acting
    keys as :func:`evaluate` splits them. Returns ``(returns [E, per_env], capped [E, per_env],
    action counts [A])`` (:meth:`EvalResult.from_arrays`).
    """
    n, num_actions = fenv.num_envs, fenv.spec.num_actions
    key, sub = jax.random.split(jax.random.PRNGKey(seed))
    env_state, _ = fenv.init(sub)
    rows = jnp.arange(n)

    def body(carry):
        env_state, key, rng, done, returns, capped, counts = carry
        rng, act_key = jax.random.split(rng)
        action = greedy(params, act_key, env_state if on_state else fenv.observation(env_state)).action
        wanted = done < per_env
        counts = counts.at[action].add(wanted.astype(jnp.int32))
        key, sub = jax.random.split(key)
        env_state, st = fenv.step(sub, env_state, action)
        record = st.game_end & wanted
        slot = jnp.minimum(done, per_env - 1)
        returns = returns.at[rows, slot].set(jnp.where(record, st.game_return, returns[rows, slot]))
        capped = capped.at[rows, slot].set(jnp.where(record, st.truncated, capped[rows, slot]))
        return env_state, key, rng, done + record.astype(jnp.int32), returns, capped, counts

    carry = (env_state, key, rng, jnp.zeros(n, jnp.int32), jnp.zeros((n, per_env), jnp.float32),
             jnp.zeros((n, per_env), bool), jnp.zeros(num_actions, jnp.int32))
    carry = jax.lax.while_loop(lambda c: jnp.min(c[3]) < per_env, body, carry)
    return carry[4], carry[5], carry[6]


def evaluate_functional(greedy: Callable, params, fenv: FunctionalEnv, episodes: int, rng: jnp.ndarray,
                        seed: int, *, on_state: bool = False) -> EvalResult:
    """:func:`evaluate` on a pure JAX env, compiled whole (one program, no host step);
    ``on_state`` as for :func:`play_games`."""
    per_env = -(-episodes // fenv.num_envs)
    out = jax.jit(functools.partial(play_games, greedy, fenv, per_env, on_state=on_state))(params, rng, seed)
    return EvalResult.from_arrays(*out, episodes)


class RunBook:
    """One run's host side: its config and directory, counters, logger, checkpointer, and
    the training games and act metrics gathered since its last log line."""

    def __init__(self, cfg: Config, run_dir: str, *, primary: bool = True):
        self.cfg, self.run_dir = cfg, run_dir
        self.primary = primary  # writes the run's files (every process checkpoints, collectively)
        os.makedirs(run_dir, exist_ok=True)
        self.checkpointer = ckpt_lib.Checkpointer(run_dir, keep=cfg.loop.keep_checkpoints)
        self.counters = Counters()
        self.resumed = False
        self.games = np.zeros(2)  # training games ended since the last log, and their return sum
        self.act_sums: dict = {}  # act metrics summed over the vector steps since the last log
        self.act_steps = 0
        self.logger: Logger | None = None
        self.progress: Progress | None = None

    def restore(self, target: dict) -> dict:
        """The snapshot of this run's latest checkpoint (its counters restored, its metrics
        cut back to it)."""
        snap, meta = self.checkpointer.restore(target, expected_config=to_dict(self.cfg),
                                               allowed_differences=RESUMABLE_FIELDS)
        self.counters = Counters(**meta["counters"])
        self.resumed = True
        if self.primary:
            truncate_metrics(os.path.join(self.run_dir, "metrics.jsonl"), self.counters.env_steps)
        return snap

    def open(self, *, tensorboard: bool, progress: bool, label: str = "") -> None:
        """Starts the logger and progress display; writes config.json and run.json."""
        self.logger = Logger(self.run_dir, tensorboard=tensorboard, time_offset=self.counters.wall_time,
                             enabled=self.primary)
        self.progress = Progress(self.cfg.loop.env_steps, self.counters.env_steps, enabled=progress and self.primary,
                                 label=label)
        if not self.primary:
            return
        with open(os.path.join(self.run_dir, "config.json"), "w") as f:
            json.dump(to_dict(self.cfg), f, indent=2)
        with open(os.path.join(self.run_dir, "run.json"), "w") as f:
            json.dump({"commit": git_commit(), "jax": jax.__version__, "devices": [str(d) for d in jax.devices()]}, f,
                      indent=2)

    def save(self, snapshot: dict) -> None:
        c = self.counters
        c.wall_time = self.logger.elapsed
        meta = {"config": to_dict(self.cfg), "counters": dataclasses.asdict(c), "commit": git_commit()}
        self.checkpointer.save(c.env_steps, snapshot, meta)

    def record_evaluation(self, result: EvalResult) -> float:
        """Counts an evaluation (thresholds, the held streak) and logs it; returns its mean."""
        cfg, c = self.cfg, self.counters
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

    def add_act_metrics(self, sums: dict, steps: int) -> None:
        for name, value in sums.items():
            self.act_sums[name] = self.act_sums.get(name, 0.0) + float(value)
        self.act_steps += steps

    def log(self, train_metrics: dict) -> dict:
        """Writes the train metrics, speeds, act metric means and the training games' mean
        return since the last log."""
        c = self.counters
        metrics = {k: float(v) for k, v in train_metrics.items()}
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

    def finish(self) -> Counters:
        """Writes summary.json and closes the logger; returns the final counters."""
        c = self.counters
        c.wall_time = self.logger.elapsed
        summary = dataclasses.asdict(c)
        summary["best_eval_return"] = None if math.isinf(c.best_eval_return) else c.best_eval_return
        if self.primary:
            with open(os.path.join(self.run_dir, "summary.json"), "w") as f:
                json.dump(summary, f, indent=2)
        self.logger.close()
        return c


def _row(tree: Any, i: int) -> Any:
    """Run ``i`` of a pytree with a leading runs axis."""
    return jax.tree_util.tree_map(lambda x: x[i], tree)


def _stack(trees: list) -> Any:
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trees)


class _Run:
    """Training runs in lockstep: one run, or several seeds of one config vmapped over
    :data:`~dreamer.agent.RUNS_AXIS` (a pure JAX env only). The agent's jitted functions, its
    state (with a leading runs axis for a group), the envs, and one :class:`RunBook` per run."""

    def __init__(self, cfgs: list[Config], make_agent: MakeAgent, make_envs: MakeEnvs, run_dirs: list[str], *,
                 progress: bool, tensorboard: bool, mesh: Any = None):
        check_group(cfgs, run_dirs)
        self.cfg = cfg = cfgs[0]
        self.grouped = len(cfgs) > 1
        self.mesh = check_mesh(mesh, cfgs)
        self.books = [RunBook(c, d, primary=sharding.is_primary()) for c, d in zip(cfgs, run_dirs)]
        self.envs = make_envs(cfg.env, "train", cfg.seed)
        self.eval_envs = make_envs(cfg.env, "eval", cfg.seed + EVAL_SEED_OFFSET)
        if self.grouped and (self.envs.functional is None or self.eval_envs.functional is None):
            raise ValueError(f"{cfg.env.id} is stepped on the host: several seeds in one program need a pure JAX "
                             f"env (MinAtar/..., gymnax/...); train the seeds one at a time")
        if jax.process_count() > 1 and self.envs.functional is None:
            raise ValueError(f"a multi-host run steps pure JAX envs on each host's devices (MinAtar/...); {cfg.env.id} "
                             f"is stepped on the host: train it on one host")
        self.agent = agent = make_agent(cfg, self.envs.spec)
        self.on_state = agent.acts_on == "env_state"
        if self.on_state and (self.envs.functional is None or self.eval_envs.functional is None):
            raise ValueError(f"the agent plans in the env's own simulator, which needs a pure JAX env "
                             f"(MinAtar/...); {cfg.env.id} is stepped on the host")
        keys = [jax.random.split(jax.random.PRNGKey(c.seed)) for c in cfgs]
        agent_rng, self.rng = self._pack([k[0] for k in keys]), self._pack([k[1] for k in keys])
        self.state_sh = self._state_shardings(jax.eval_shape(self._map(agent.init), agent_rng))
        self.act = self._jit(self._map(agent.act, (0, 0, 0, None)))
        self.greedy = self._jit(agent.greedy)
        self.observe = self._jit(self._map(agent.observe), donate_argnums=0, out_shardings=self.state_sh)
        self.train_step = self._jit(self._map(agent.train), donate_argnums=0, out_shardings=(self.state_sh, self._rep))
        self.explore = self._jit(self._map(explore, (0, 0, None, None)), static_argnums=3)
        fenv = self.eval_envs.functional
        if fenv is not None:
            per_env = -(-cfg.env.eval_episodes // fenv.num_envs)
            self.play = self._jit(self._map(functools.partial(play_games, agent.greedy, fenv, per_env,
                                                              on_state=self.on_state)), out_shardings=self._rep)
        self.state = self._jit(self._map(agent.init), out_shardings=self.state_sh)(agent_rng)
        self.train_metrics: dict = {}  # the last train call's metrics (device arrays until logged)
        self.fused: FusedEnv | None = None  # the carry of a pure JAX env (see _fused_steps)
        self._restore()
        for i, book in enumerate(self.books):
            book.open(tensorboard=tensorboard, progress=progress and (i == 0 or not _is_tty()),
                      label=f"seed {book.cfg.seed}" if self.grouped else "")

    # -- devices -------------------------------------------------------------------------------
    @property
    def _rep(self) -> Any:
        """Replicated over the mesh (None without one: jax's default placement)."""
        return None if self.mesh is None else sharding.replicated(self.mesh)

    def _state_shardings(self, shapes: Any) -> Any:
        """Where the agent state lies on the mesh: runs side by side along it (their leading
        axis), one run as the agent says (its replay along the envs); None without a mesh."""
        if self.mesh is None:
            return None
        if self.grouped:
            return jax.tree_util.tree_map(lambda _: sharding.leading(self.mesh), shapes)
        if self.agent.shardings is None:
            return jax.tree_util.tree_map(lambda _: self._rep, shapes)
        return self.agent.shardings(shapes, self.mesh)

    def _jit(self, fn: Callable, out_shardings: Any = None, **kwargs) -> Callable:
        """``jax.jit(fn)``; on a mesh, its outputs placed by ``out_shardings`` and its traces made
        under the mesh (one run: the learner then puts its batch along the data axis)."""
        if self.mesh is None:
            return jax.jit(fn, **kwargs)
        jitted = jax.jit(fn, out_shardings=out_shardings, **kwargs)
        if self.grouped:  # the runs axis carries the mesh; inside a run nothing is split further
            return jitted

        def call(*args, **kw):
            with jax.set_mesh(self.mesh):
                return jitted(*args, **kw)

        call.jitted = jitted
        return call

    def _put_batch(self, x: Any) -> Any:
        """Host arrays of the training envs (leading axis ``N``) onto the devices, along the mesh."""
        if self.mesh is None:
            return jnp.asarray(x)
        return sharding.place(x, sharding.leading(self.mesh))

    def _fused_shardings(self, fused: "FusedEnv") -> Any:
        if self.mesh is None:
            return None
        if self.grouped:
            return jax.tree_util.tree_map(lambda _: sharding.leading(self.mesh), fused)
        n, lead, rep = self.envs.num_envs, sharding.leading(self.mesh), self._rep
        return FusedEnv(sharding.by_leading_axis(fused.state, self.mesh, n), lead, lead, rep,
                        jax.tree_util.tree_map(lambda _: rep, fused.games),
                        jax.tree_util.tree_map(lambda _: rep, fused.act_sums))

    # -- one run or many ------------------------------------------------------------------------
    def _map(self, fn: Callable, in_axes: Any = 0) -> Callable:
        """``fn`` for one run, or vmapped over the runs of a group."""
        return jax.vmap(fn, in_axes=in_axes, axis_name=RUNS_AXIS) if self.grouped else fn

    def _pack(self, per_run: list) -> Any:
        return _stack(per_run) if self.grouped else per_run[0]

    def _unpack(self, tree: Any) -> list:
        return [_row(tree, i) for i in range(len(self.books))] if self.grouped else [tree]

    def _split(self, n: int) -> list:
        """``self.rng, *keys = split(self.rng, n + 1)`` in every run; returns the ``n`` keys."""
        keys = self._map(lambda k: tuple(jax.random.split(k, n + 1)))(self.rng)
        self.rng = keys[0]
        return list(keys[1:])

    @property
    def counters(self) -> Counters:
        """The (first) run's counters; env steps and updates are those of every run of a group."""
        return self.books[0].counters

    @property
    def run_dir(self) -> str:
        return self.books[0].run_dir

    @property
    def checkpointer(self) -> ckpt_lib.Checkpointer:
        return self.books[0].checkpointer

    @property
    def resumed(self) -> bool:
        return self.books[0].resumed

    def _advance(self, env_steps: int = 0, updates: int = 0) -> None:
        for book in self.books:
            book.counters.env_steps += env_steps
            book.counters.updates += updates

    # -- checkpoints -------------------------------------------------------------------------
    def _snapshots(self) -> list[dict]:
        return [{"agent": s, "rng": r} for s, r in zip(self._unpack(self.state), self._unpack(self.rng))]

    def _restore(self) -> None:
        """Resumes from the runs' checkpoints: all of them (at one env step) or none."""
        have = [b.checkpointer.latest() is not None for b in self.books]
        if not any(have):
            return
        if not all(have):
            missing = [b.run_dir for b, h in zip(self.books, have) if not h]
            raise ckpt_lib.CheckpointError(f"{missing[0]} has no checkpoint while the other runs of its group do: "
                                           f"resume the group with all of its run directories, or none")
        snaps = [b.restore(t) for b, t in zip(self.books, self._snapshots())]
        steps = {b.counters.env_steps for b in self.books}
        if len(steps) > 1:
            raise ckpt_lib.CheckpointError(f"the runs' checkpoints are at different env steps ({sorted(steps)}): "
                                           f"runs trained side by side resume from one step")
        self.state = self._pack([s["agent"] for s in snaps])
        self.rng = self._pack([s["rng"] for s in snaps])
        if self.mesh is not None:  # the devices of this launch, whatever the saving launch had
            self.state = sharding.place(self.state, self.state_sh)

    def save(self) -> None:
        """Checkpoints every run (after checking the last train metrics are finite)."""
        self.check_finite(self.train_metrics)
        for book, snap in zip(self.books, self._snapshots()):
            book.save(snap)

    def check_finite(self, metrics: dict) -> None:
        for book, row in zip(self.books, self._unpack(sharding.fetch(metrics))):
            book.check_finite(row)

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
        self._advance(updates=self.agent.updates_per_call)
        return metrics

    def evaluate(self) -> list[EvalResult]:
        """One evaluation of every run: a compiled :func:`play_games` on a pure JAX env, else
        :func:`evaluate` on the host env."""
        cfg, c = self.cfg, self.counters
        (key,) = self._split(1)
        seeds = [b.cfg.seed + EVAL_SEED_OFFSET + b.counters.evaluations for b in self.books]
        params = self.agent.params(self.state)
        if self.eval_envs.functional is None:
            return [evaluate(self.greedy, params, self.eval_envs, cfg.env.eval_episodes, key, seeds[0])]
        out = sharding.fetch(self.play(params, key, self._pack([jnp.int32(s) for s in seeds])))
        return [EvalResult.from_arrays(*row, cfg.env.eval_episodes) for row in self._unpack(out)]

    def run_evaluation(self) -> float:
        """Evaluates every run and records it; returns the (first) run's mean."""
        means = [book.record_evaluation(result) for book, result in zip(self.books, self.evaluate())]
        return means[0]

    def log(self) -> dict:
        """Writes every run's latest train metrics, speeds and training games since the last
        log (the one host sync of the training loop); returns the (first) run's record."""
        self.check_finite(self.train_metrics)
        self.drain()
        rows = self._unpack(sharding.fetch(self.train_metrics))
        return [book.log(row) for book, row in zip(self.books, rows)][0]

    def total_updates(self) -> int:
        cfg = self.cfg
        collected = int(cfg.loop.replay_ratio * max(cfg.loop.env_steps - cfg.replay.min_size, 0))
        return collected + cfg.loop.extra_updates

    # -- the loop ------------------------------------------------------------------------------
    def finished(self) -> bool:
        """The runs have nothing left to do: the budget is spent, or they stopped early and
        the stop rule still holds (a resumed run that stopped early stays stopped)."""
        c, loop = self.counters, self.cfg.loop
        held = bool(c.stopped) and loop.stop_when_held > 0 and all(b.counters.held >= loop.stop_when_held
                                                                    for b in self.books)
        return held or (c.env_steps >= loop.env_steps and c.updates >= self.total_updates())

    def held(self) -> bool:
        """Every run's evaluation held the stop threshold as many times in a row as asked."""
        loop = self.cfg.loop
        return bool(loop.stop_when_held) and all(b.counters.held >= loop.stop_when_held for b in self.books)

    def run(self) -> Counters:
        """Trains to the end (or to a signal); returns the (first) run's counters
        (:meth:`run_all` for every run's)."""
        return self.run_all()[0]

    def run_all(self) -> list[Counters]:
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
            for book in self.books:
                book.progress.close()
            self.save()
        counters = [book.finish() for book in self.books]
        self.close()
        return counters

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
            self.books[0].progress.update(n)
            if c.env_steps >= next_eval or c.env_steps >= cfg.loop.env_steps:
                next_eval = (c.env_steps // cfg.loop.eval_every + 1) * cfg.loop.eval_every
                self.run_evaluation()
                if self.held():
                    for book in self.books:
                        held = book.counters.held
                        book.counters.stopped = (f"the evaluation held {cfg.loop.thresholds[0]:g} for {held} "
                                                 f"evaluation{'s' if held > 1 else ''} in a row")
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
        cfg, c, envs, book = self.cfg, self.counters, self.envs, self.books[0]
        frames = envs.reset()
        first = np.ones(envs.num_envs, bool)
        while True:
            (key,) = self._split(1)
            out = self.act(self.state, key, self._put_batch(envs.observation()), temperature_at(cfg, c.env_steps))
            self.train_owed()  # dispatched before the envs step, so both run at once
            action = out.action
            if cfg.loop.epsilon_schedule:
                action = self.explore(explore_key(key), action, epsilon_at(cfg, c.env_steps), envs.spec.num_actions)
            action, act_means = jax.device_get((action, _means(out.metrics)))
            book.add_act_metrics(act_means, 1)
            next_frames, reward, terminated, truncated, info = envs.step(action)
            self.state = self.observe(self.state, Transition(frames, action, reward, terminated, truncated, first, out))
            first = terminated | truncated
            frames = next_frames
            self._advance(env_steps=envs.num_envs)
            game_end, game_return = game_info(info)
            book.games += np.array([game_end.sum(), game_return[game_end].sum()])
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
        init_key, key = self._split(2)
        shapes = jax.eval_shape(self._map(fenv.init), init_key)
        env_sh = None if self.mesh is None else self._fused_shardings(FusedEnv(shapes[0], shapes[1], shapes[1], None,
                                                                                  (), {}))[:2]
        env_state, frame = self._jit(self._map(fenv.init), out_shardings=env_sh)(init_key)
        one_env = self._unpack(env_state)[0]
        act_shape = jax.eval_shape(self.agent.act, self._unpack(self.state)[0], self._unpack(key)[0],
                                   one_env if self.on_state else fenv.observation(one_env), 1.0)
        self._act_names = tuple(act_shape.metrics or {})
        first = self._pack([jnp.ones(n, bool)] * len(self.books))
        self.fused = FusedEnv(env_state, frame, first, key, *self._zero_stats())
        if self.mesh is not None:  # as the chunks return it, so that the first call compiles what the others run
            self.fused = sharding.place(self.fused, self._fused_shardings(self.fused))
        self._fused_steps_since_drain = 0
        epsilon_greedy = cfg.loop.epsilon_schedule != ()
        carry_sh = self._fused_shardings(self.fused)
        chunk = {t: self._jit(self._map(functools.partial(fused_chunk, self.agent, fenv, k, t,
                                                          epsilon_greedy=epsilon_greedy), (0, 0, None, None)),
                              donate_argnums=(0, 1),
                              out_shardings=None if self.mesh is None else (self.state_sh, carry_sh, self._rep))
                 for t in (0, calls)}
        while True:
            before = c.env_steps
            self._advance(env_steps=k * n)
            train = calls if self.updates_due() >= self.agent.updates_per_call * calls else 0
            self.state, self.fused, metrics = chunk[train](self.state, self.fused, temperature_at(cfg, before),
                                                           epsilon_at(cfg, before))
            if train:
                self._advance(updates=calls * per_call)
                self.train_metrics = metrics
            self.train_owed()
            self._fused_steps_since_drain += k
            yield k * n

    def drain(self) -> None:
        """Moves the device-side game counts and act metric sums of a fused env to the host."""
        if self.fused is None:
            return
        games, sums = sharding.fetch((self.fused.games, self.fused.act_sums))
        for book, g, s in zip(self.books, self._unpack(games), self._unpack(sums)):
            book.games += g
            book.add_act_metrics(s, self._fused_steps_since_drain)
        games, act_sums = self._zero_stats()  # new buffers: the chunks donate the carry
        if self.mesh is not None:
            games, act_sums = sharding.place((games, act_sums), jax.tree_util.tree_map(
                lambda _: sharding.leading(self.mesh) if self.grouped else self._rep, (games, act_sums)))
        self.fused = self.fused._replace(games=games, act_sums=act_sums)
        self._fused_steps_since_drain = 0

    def _zero_stats(self) -> tuple:
        zeros = (jnp.zeros(2, jnp.float32), {name: jnp.zeros((), jnp.float32) for name in self._act_names})
        return self._pack([zeros] * len(self.books))


def check_mesh(mesh: Any, cfgs: list[Config]) -> Any:
    """The mesh to train on (``None``: one device, the single-device program), or a one-line
    ``ValueError`` when the runs do not split evenly over its devices."""
    if mesh is None or (mesh.size == 1 and jax.process_count() == 1):
        return None
    n, cfg = mesh.size, cfgs[0]
    if len(cfgs) > 1:
        if len(cfgs) % n:
            raise ValueError(f"{len(cfgs)} runs side by side do not split over {n} devices: give a multiple of {n} "
                             f"seeds, or fewer devices")
        return mesh
    for name, value in (("env.num_envs", cfg.env.num_envs), ("replay.batch_size", cfg.replay.batch_size)):
        if value % n:
            raise ValueError(f"{name} ({value}) does not split over {n} devices: make it a multiple of {n}, or use "
                             f"fewer devices")
    return mesh


def check_group(cfgs: list[Config], run_dirs: list[str]) -> None:
    """Refuses (one-line ``ValueError``) runs that cannot share one program: configs that
    differ in more than the seed, repeated seeds or run directories."""
    if not cfgs or len(cfgs) != len(run_dirs):
        raise ValueError(f"expected one run directory per config, got {len(cfgs)} configs and {len(run_dirs)} "
                         f"directories")
    base = to_dict(cfgs[0])
    for cfg in cfgs[1:]:
        differ = config_differences(to_dict(cfg), base, ("seed",))
        if differ:
            k, was, asked = differ[0]
            raise ValueError(f"runs trained side by side differ only in their seed; {k} is {was!r} in one and "
                             f"{asked!r} in another")
    seeds = [c.seed for c in cfgs]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"runs trained side by side need distinct seeds, got {seeds}")
    dirs = [os.path.abspath(d) for d in run_dirs]
    if len(set(dirs)) != len(dirs):
        raise ValueError(f"runs trained side by side need distinct run directories, got {run_dirs}")


def _is_tty() -> bool:
    import sys

    return hasattr(sys.stdout, "isatty") and sys.stdout.isatty()


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


def fused_chunk(agent: Agent, fenv: FunctionalEnv, steps: int, train_calls: int, state, env: FusedEnv, temperature,
                epsilon=0.0, *, epsilon_greedy: bool = False):
    """``steps`` vector steps (act, env step, observe) then ``train_calls`` train calls, as one
    pure function: ``(agent state, env carry, temperature, epsilon) -> (state, carry, mean train
    metrics)``; with ``epsilon_greedy``, epsilon-greedy exploration (:func:`explore`) around the agent's
    actions, which are what the envs play and the replay stores."""

    def one(carry, _):
        state, env = carry
        key, act_key, env_key = jax.random.split(env.key, 3)
        out = agent.act(state, act_key, env.state if agent.acts_on == "env_state" else fenv.observation(env.state),
                        temperature)
        action = out.action
        if epsilon_greedy:
            action = explore(explore_key(act_key), action, epsilon, fenv.spec.num_actions)
        env_state, st = fenv.step(env_key, env.state, action)
        state = agent.observe(state, Transition(env.frame, action, st.reward, st.terminated, st.truncated,
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


def open_run(cfg: Config | list[Config], make_agent: MakeAgent, make_envs: MakeEnvs, run_dir: str | list[str], *,
             progress: bool = True, tensorboard: bool = True, mesh: Any = None) -> _Run:
    """Builds (or resumes, when ``run_dir`` holds a checkpoint) a run without starting it; with
    lists of configs (differing only in the seed) and run directories, a group of runs
    trained side by side in one program (see the module docstring)."""
    cfgs = list(cfg) if isinstance(cfg, (list, tuple)) else [cfg]
    run_dirs = list(run_dir) if isinstance(run_dir, (list, tuple)) else [run_dir]
    return _Run(cfgs, make_agent, make_envs, run_dirs, progress=progress, tensorboard=tensorboard, mesh=mesh)


def train(cfg: Config, make_agent: MakeAgent, make_envs: MakeEnvs, run_dir: str, *, progress: bool = True,
          tensorboard: bool = True) -> Counters:
    """Trains ``make_agent(cfg, spec)`` on ``make_envs(cfg.env, mode, seed)`` into ``run_dir``
    (resuming it if it holds a checkpoint); returns the final counters."""
    return open_run(cfg, make_agent, make_envs, run_dir, progress=progress, tensorboard=tensorboard).run()


def train_runs(cfgs: list[Config], make_agent: MakeAgent, make_envs: MakeEnvs, run_dirs: list[str], *,
               progress: bool = True, tensorboard: bool = True) -> list[Counters]:
    """Trains several seeds of one config side by side, vmapped in one compiled program (a
    pure JAX env only), each into its own run directory; returns every run's counters."""
    return open_run(list(cfgs), make_agent, make_envs, list(run_dirs), progress=progress,
                    tensorboard=tensorboard).run_all()


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
