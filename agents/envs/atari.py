"""Atari-100k environments on top of ``ale_py.AtariVectorEnv``.

The benchmark protocol lives in ONE place, :class:`AtariProtocol`; every value cites
``shared/PROTOCOL.md`` (the settings EfficientZero, BBF and DreamerV3 agree on) or the
EfficientZero code it was read from. :class:`AtariEnvs` is the vector env the training
loop uses; :func:`make_train_envs` / :func:`make_eval_envs` build it with the training or
the evaluation rules.

What ale-py 0.12 does and what this module does instead
-------------------------------------------------------
``AtariVectorEnv`` (C++, multithreaded) does: emulation, frame skip with max-pool over
the last two raw frames, resize, RGB/gray, the random no-op starts, minimal action set,
sticky actions (we set the probability to 0) and SAME-STEP autoreset at game over
(``autoreset_mode="SameStep"``: the returned observation is the first of the next game,
the last observation of the old one is in ``info["final_obs"]``).

The wrapper does the rest itself, because ale-py's built-ins do not match the protocol:

* Episodic life. ale-py's ``episodic_life=True`` RESETS THE WHOLE GAME on every life
  loss (measured on 0.12.1: after a Breakout life loss lives are back to 5 and the
  episode frame counter restarts), so the agent would never see later lives and the
  real game return is lost. The protocol (DeepMind's EpisodicLifeEnv, as in
  EfficientZero) ends the training *episode* on a life loss while the *game* goes on.
  We run ale-py with ``episodic_life=False`` and compare ``info["lives"]``.
* Reward clipping: done here (sign) so the unclipped reward stays available.
* Episode cap: ale-py caps raw frames counted from the reset, no-op frames included;
  the protocol caps AGENT steps after the no-ops (EfficientZero's TimeLimit sits inside
  the no-op and episodic-life wrappers, so it counts agent steps of a whole game across
  lives). We count agent steps per game and reset a capped env with a partial reset;
  ale-py's own frame cap is set just above ours as a backstop that never fires first.
* No-op starts: ale-py draws ``randint(0, noop_max - 1)`` raw no-op frames (measured:
  ``noop_max=30`` gives 0..29), so we pass ``noop_max + 1`` to get 0..30 ("up to 30").
  EfficientZero's NoopResetEnv draws 1..30; the one-frame difference is immaterial.
* Frame stacking: ale-py is run with ``stack_num=1``. The replay stores single frames
  and stacks at sample time; for acting, :meth:`AtariEnvs.observation` keeps a rolling
  stack that is refilled with an episode's first frame when the episode starts
  (EfficientZero's GameHistory does the same).
* Fire reset: ale-py presses FIRE after every reset by default; EfficientZero, BBF
  (Dopamine) and DreamerV3 do not, so it is off.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from typing import Any, Literal

import numpy as np

from agents.envs.base import ClosesOnExit, EnvSpec

# The 26 games of Atari-100k (PROTOCOL.md; reference/atari100k_scores.csv), spelled as
# in the papers' tables.
ATARI100K_GAMES: tuple[str, ...] = (
    "Alien", "Amidar", "Assault", "Asterix", "BankHeist", "BattleZone", "Boxing",
    "Breakout", "ChopperCommand", "CrazyClimber", "DemonAttack", "Freeway",
    "Frostbite", "Gopher", "Hero", "Jamesbond", "Kangaroo", "Krull", "KungFuMaster",
    "MsPacman", "Pong", "PrivateEye", "Qbert", "RoadRunner", "Seaquest", "UpNDown",
)


@dataclasses.dataclass(frozen=True)
class AtariProtocol:
    """The Atari-100k environment protocol (PROTOCOL.md, "Environment" table).

    Defaults are EfficientZero's settings. Change them only with
    ``dataclasses.replace`` (or :meth:`gray64`) and say why where it is done.
    """

    # "frame stack / skip: 4 / 4, max-pool over the last two frames" (PROTOCOL.md).
    frame_skip: int = 4
    max_pool: bool = True
    frame_stack: int = 4
    # "frames: 96x96 RGB (EZ); 64x64 gray is LightZero's cheaper choice" (PROTOCOL.md).
    height: int = 96
    width: int = 96
    grayscale: bool = False
    # "sticky actions: none (repeat_action_probability 0)" (PROTOCOL.md).
    repeat_action_probability: float = 0.0
    # "no-op starts: up to 30" (PROTOCOL.md): 0..noop_max raw no-op frames per reset.
    noop_max: int = 30
    # Minimal action set (the csv's `actions` column): EZ, BBF, DreamerV3 all use it.
    full_action_space: bool = False
    # EfficientZero's make_atari has no FireResetEnv; neither has Dopamine (BBF).
    fire_reset: bool = False
    # "life loss: terminal in training data only; evaluation plays whole games".
    train_episodic_life: bool = True
    # "reward clipping: sign, in training only" (PROTOCOL.md).
    train_clip_rewards: bool = True
    # "episode cap: training 3,000 agent steps (EZ)": EZ config max_moves=12000 frames
    # // frame_skip 4 = 3000, counted per game (its TimeLimit is inside EpisodicLife).
    train_max_episode_steps: int = 3_000
    # "evaluation 27,000 agent steps (108k frames)": EZ's final test 108000 // 4.
    eval_max_episode_steps: int = 27_000
    # "Budget: 100,000 agent steps = 400,000 frames" (PROTOCOL.md).
    env_steps_budget: int = 100_000
    # "evaluation: 32 episodes per run (EZ); 3 runs per game" (PROTOCOL.md).
    eval_episodes: int = 32
    eval_runs_per_game: int = 3

    @property
    def channels(self) -> int:
        return 1 if self.grayscale else 3

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, self.channels)

    @property
    def observation_shape(self) -> tuple[int, int, int]:
        """Shape of one stacked observation, channels last: (H, W, C * stack)."""
        return (self.height, self.width, self.channels * self.frame_stack)

    @classmethod
    def gray64(cls, **overrides: Any) -> "AtariProtocol":
        """64x64 grayscale frames (LightZero's cheaper choice), otherwise unchanged."""
        return cls(**{"height": 64, "width": 64, "grayscale": True, **overrides})


ATARI100K = AtariProtocol()


# --------------------------------------------------------------------------- game ids


def _all_rom_ids() -> list[str]:
    from ale_py import roms

    return list(roms.get_all_rom_ids())


def _squash(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def ale_game_id(game: str) -> str:
    """Map "Breakout", "MsPacman", "ms_pacman", "ALE/MsPacman-v5",
    "MsPacmanNoFrameskip-v4" ... to ale-py's snake_case ROM id ("ms_pacman").

    Raises ValueError, listing close matches, for an unknown game.
    """
    if not isinstance(game, str) or not game.strip():
        raise ValueError(f"game must be a non-empty string, got {game!r}")
    name = game.strip()
    if "/" in name:  # "ALE/Breakout-v5"
        name = name.split("/", 1)[1]
    name = re.sub(r"-v\d+$", "", name)
    name = re.sub(r"(NoFrameskip|Deterministic)$", "", name)
    rom_ids = _all_rom_ids()
    by_key = {_squash(r): r for r in rom_ids}
    key = _squash(name)
    if key in by_key:
        return by_key[key]
    candidates = sorted(set(rom_ids) | set(ATARI100K_GAMES))
    close = difflib.get_close_matches(name, candidates, n=5, cutoff=0.5)
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
    close += [c for c in difflib.get_close_matches(snake, rom_ids, n=5, cutoff=0.5)
              if c not in close]
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise ValueError(f"Unknown Atari game {game!r}.{hint} "
                     f"(Atari-100k games: {', '.join(ATARI100K_GAMES)})")


# --------------------------------------------------------------------------- envs


class AtariEnvs(ClosesOnExit):
    """A batch of Atari games with the Atari-100k protocol and same-step autoreset.

    Interface used by the training loop:

    * ``num_envs``, ``num_actions``, ``frame_shape`` (H, W, C) of ONE frame (C = 3 RGB
      or 1 gray), ``frame_dtype`` (uint8), ``frame_stack`` (4), ``observation_shape``
      (H, W, C * frame_stack), ``action_set`` (names of the minimal action set).
    * ``reset(seed=None) -> frames`` uint8 [N, H, W, C]: newest single frame per env.
      An int seed seeds env i with ``seed + i`` (ale-py's rule). Reseeding is slow in
      ale-py (measured ~70 ms per env on 2 cores), so reset once per run; later games
      start by autoreset, which continues each env's seeded random stream.
    * ``step(actions [N] int) -> (frames, rewards, terminated, truncated, info)``,
      frames uint8 [N, H, W, C], rewards float32 [N], terminated / truncated bool [N].
      SAME-STEP autoreset: when an env's episode ends at this step, ``frames[i]`` is
      already the first frame of its next episode, while rewards / terminated /
      truncated describe the step that just ended; ``info["final_frames"][i]`` is the
      last frame of the ended episode (use it to bootstrap a truncated episode).
      terminated and truncated are never both True.
    * ``observation() -> uint8 [N, H, W, C * frame_stack]``: the rolling stack for
      acting, channels ordered oldest frame first (channel k * C + c is frame k's
      channel c). At the start of an episode the stack is filled with its first frame.

    Training mode (``mode="train"``): terminated on a life loss (episodic life; the game
    goes on, and the next frame starts the next training episode) and on game over;
    rewards are sign-clipped; truncated after ``train_max_episode_steps`` agent steps of
    a game. Evaluation mode (``mode="eval"``): terminated only at game over, rewards
    unclipped, truncated after ``eval_max_episode_steps`` agent steps.

    ``info`` from ``step``:
      ``raw_reward`` float32 [N] unclipped reward; ``game_over`` bool [N] real game over
      (all lives lost); ``life_loss`` bool [N] (a life lost, game continuing);
      ``game_end`` bool [N] the whole game ended (game over or cap) and was reset;
      ``game_return`` float32 [N] undiscounted unclipped return of the game that ended
      (NaN where none ended); ``game_length`` int32 [N] its agent steps (0 where none);
      ``episode_returns`` / ``episode_lengths``: python lists of the same for the games
      that ended at this step (for logging training / evaluation returns);
      ``final_frames`` uint8 [N, H, W, C]; ``lives``, ``episode_frame_number``,
      ``frame_number`` int32 [N] from ale-py after the step (for a reset env: of its new
      game); ``game_steps`` int32 [N] agent steps so far in the current game.
    """

    def __init__(
        self,
        game: str,
        num_envs: int,
        *,
        mode: Literal["train", "eval"] = "train",
        protocol: AtariProtocol = ATARI100K,
        num_threads: int = 0,
        seed: int | None = None,
    ):
        import ale_py

        if mode not in ("train", "eval"):
            raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.game = ale_game_id(game)
        self.mode = mode
        self.protocol = protocol
        self.num_envs = int(num_envs)
        self.frame_stack = protocol.frame_stack
        self.frame_shape = protocol.frame_shape
        self.frame_dtype = np.uint8
        self.observation_shape = protocol.observation_shape
        self.seed = seed
        training = mode == "train"
        self.episodic_life = training and protocol.train_episodic_life
        self.clip_rewards = training and protocol.train_clip_rewards
        self.max_episode_steps = (protocol.train_max_episode_steps if training
                                  else protocol.eval_max_episode_steps)
        # ale-py's frame cap (counted from reset, no-ops included) is a backstop set
        # above ours: ours fires at <= max_steps * skip + noop_max (+1 fire) frames.
        backstop_frames = (self.max_episode_steps + protocol.noop_max + 4) * protocol.frame_skip
        self._env = ale_py.AtariVectorEnv(
            self.game,
            self.num_envs,
            num_threads=num_threads,
            max_num_frames_per_episode=backstop_frames,
            repeat_action_probability=protocol.repeat_action_probability,
            full_action_space=protocol.full_action_space,
            autoreset_mode="SameStep",
            img_height=protocol.height,
            img_width=protocol.width,
            grayscale=protocol.grayscale,
            stack_num=1,
            frameskip=protocol.frame_skip,
            maxpool=protocol.max_pool,
            noop_max=protocol.noop_max + 1,  # ale-py draws 0..noop_max-1, see module doc
            episodic_life=False,  # done here, see module doc
            life_loss_info=False,
            reward_clipping=False,  # done here, keeps the raw reward
            use_fire_reset=protocol.fire_reset,
        )
        self.action_set = tuple(a.name for a in self._env.ale.get_action_set())
        self.num_actions = len(self.action_set)
        n = self.num_envs
        self._lives = np.zeros(n, np.int32)
        self._game_return = np.zeros(n, np.float64)
        self._game_steps = np.zeros(n, np.int32)
        self._stack = np.zeros((n, self.frame_stack, *self.frame_shape), np.uint8)
        self._ready = False
        self.ale_info: dict[str, np.ndarray] = {}

    # ----------------------------------------------------------------- helpers
    def _frames(self, obs: np.ndarray) -> np.ndarray:
        """ale-py obs [N, 1, H, W(, 3)] -> newest frame [N, H, W, C] (a copy)."""
        frames = obs[:, -1]
        if frames.ndim == 3:  # grayscale
            frames = frames[..., None]
        return np.ascontiguousarray(frames)

    def _start_stacks(self, mask: np.ndarray, frames: np.ndarray) -> None:
        self._stack[mask] = frames[mask][:, None]

    def _ale_reset(self, mask: np.ndarray | None, seed: int | None):
        if mask is None:
            return self._env.reset(seed=seed)
        # Seed -1: no reseeding, the env continues its own random stream (seeded by the
        # last full reset), so runs stay reproducible. Reseeding costs ~70 ms per env.
        seeds = np.full(int(mask.sum()), -1, dtype=np.int64)
        return self._env.reset(seed=seeds, options={"reset_mask": mask})

    # ------------------------------------------------------------------- API
    def reset(self, seed: int | None = None) -> np.ndarray:
        """Reset all envs; returns the first frame of each, uint8 [N, H, W, C].

        Without a seed, the first reset uses the constructor's ``seed`` and later ones
        do not reseed (each env continues its random stream)."""
        if seed is None and not self._ready:
            seed = self.seed
        seed = None if seed is None else int(seed)
        obs, info = self._ale_reset(None, seed)
        frames = self._frames(obs)
        self.ale_info = {k: np.asarray(v) for k, v in info.items()}
        self._lives = np.asarray(info["lives"], np.int32).copy()
        self._game_return[:] = 0.0
        self._game_steps[:] = 0
        self._start_stacks(np.ones(self.num_envs, bool), frames)
        self._ready = True
        return frames

    def step(self, actions) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        if not self._ready:
            raise RuntimeError("call reset() before step()")
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs,):
            actions = actions.reshape(self.num_envs)
        if not np.issubdtype(actions.dtype, np.integer):
            raise TypeError(f"actions must be integers, got {actions.dtype}")
        if actions.min() < 0 or actions.max() >= self.num_actions:
            raise ValueError(f"actions must lie in [0, {self.num_actions}), got {actions}")
        obs, reward, ale_term, ale_trunc, info = self._env.step(actions.astype(np.int32))
        frames = self._frames(obs)
        ale_term = np.asarray(ale_term, bool)
        ale_trunc = np.asarray(ale_trunc, bool)
        raw_reward = np.asarray(reward, np.float32)
        # ale-py already reset these envs (same-step): obs/lives are of the new game.
        ale_reset = ale_term | ale_trunc
        final_frames = frames.copy()
        if ale_reset.any():
            final_frames[ale_reset] = self._frames(info["final_obs"][ale_reset])

        self._game_return += raw_reward
        self._game_steps += 1
        lives = np.asarray(info["lives"], np.int32)
        # A life lost while the game goes on. As EfficientZero's EpisodicLifeEnv, lives
        # must stay > 0 (Q*bert shows 0 lives for a few frames before its game over).
        life_loss = ~ale_reset & (lives < self._lives) & (lives > 0)
        game_over = ale_term
        # Our agent-step cap (per game, across lives).
        capped = ~ale_reset & (self._game_steps >= self.max_episode_steps)
        game_end = ale_reset | capped

        terminated = game_over | (life_loss if self.episodic_life else False)
        truncated = (ale_trunc | capped) & ~terminated

        game_return = np.where(game_end, self._game_return, np.nan).astype(np.float32)
        game_length = np.where(game_end, self._game_steps, 0).astype(np.int32)

        ale_info = {k: np.array(v) for k, v in info.items() if k != "final_obs"}
        if capped.any():
            # Partial reset of the capped envs; the others report their current state.
            obs2, info2 = self._ale_reset(capped, None)
            frames[capped] = self._frames(obs2)[capped]
            for k, v in info2.items():
                if k in ale_info:
                    ale_info[k][capped] = np.asarray(v)[capped]
            lives = ale_info["lives"]
        self._lives = np.asarray(lives, np.int32).copy()
        self._game_return[game_end] = 0.0
        self._game_steps[game_end] = 0
        self.ale_info = ale_info

        rewards = np.sign(raw_reward) if self.clip_rewards else raw_reward.copy()
        new_episode = terminated | truncated
        # roll the acting stack, then restart it for envs whose episode just started
        self._stack[:, :-1] = self._stack[:, 1:]
        self._stack[:, -1] = frames
        self._start_stacks(new_episode, frames)

        ended = np.flatnonzero(game_end)
        out_info = {
            "raw_reward": raw_reward,
            "game_over": game_over,
            "life_loss": life_loss,
            "game_end": game_end,
            "game_return": game_return,
            "game_length": game_length,
            "episode_returns": [float(game_return[i]) for i in ended],
            "episode_lengths": [int(game_length[i]) for i in ended],
            "final_frames": final_frames,
            "lives": ale_info["lives"].astype(np.int32),
            "episode_frame_number": ale_info["episode_frame_number"].astype(np.int32),
            "frame_number": ale_info["frame_number"].astype(np.int32),
            "game_steps": self._game_steps.copy(),
        }
        return frames, rewards.astype(np.float32), terminated, truncated, out_info

    functional = None  # host-only (ale-py)

    @property
    def spec(self) -> EnvSpec:
        return EnvSpec(self.num_actions, tuple(self.frame_shape), self.frame_dtype, self.frame_stack)

    def observation(self) -> np.ndarray:
        """The acting stack: uint8 [N, H, W, C * frame_stack], oldest frame first along channels."""
        n, s, h, w, c = self._stack.shape
        return np.ascontiguousarray(np.moveaxis(self._stack, 1, 3).reshape(n, h, w, s * c))

    def close(self) -> None:
        env, self._env = getattr(self, "_env", None), None
        if env is not None:
            env.close()

    def __repr__(self) -> str:
        return (f"AtariEnvs(game={self.game!r}, num_envs={self.num_envs}, mode={self.mode!r}, "
                f"frame_shape={self.frame_shape}, num_actions={self.num_actions})")


def make_train_envs(game: str, num_envs: int, protocol: AtariProtocol = ATARI100K,
                    num_threads: int = 0, seed: int | None = None) -> AtariEnvs:
    """Training envs: episodic life, sign-clipped rewards, 3,000-step cap per game."""
    return AtariEnvs(game, num_envs, mode="train", protocol=protocol,
                     num_threads=num_threads, seed=seed)


def make_eval_envs(game: str, num_envs: int, protocol: AtariProtocol = ATARI100K,
                   num_threads: int = 0, seed: int | None = None) -> AtariEnvs:
    """Evaluation envs: whole games, raw rewards, 27,000-step cap.

    Seed them apart from the training envs (``reset(seed)`` seeds env i with seed + i).
    When averaging over a fixed number of episodes from several envs, take the same
    number of episodes from each env (e.g. each env's first game); taking the first K
    to finish favours short games.
    """
    return AtariEnvs(game, num_envs, mode="eval", protocol=protocol,
                     num_threads=num_threads, seed=seed)


def protocol_from_config(env_cfg: Any, base: AtariProtocol = ATARI100K) -> AtariProtocol:
    """The protocol with the overrides an env config carries (duck-typed: ``frame_size``,
    ``grayscale``, ``max_episode_steps``, ``eval_max_episode_steps``; None or missing
    keeps the protocol's value)."""
    overrides: dict[str, Any] = {}
    size = getattr(env_cfg, "frame_size", None)
    if size is not None:
        overrides.update(height=int(size), width=int(size))
    gray = getattr(env_cfg, "grayscale", None)
    if gray is not None:
        overrides["grayscale"] = bool(gray)
    for src, dst in (("max_episode_steps", "train_max_episode_steps"),
                     ("eval_max_episode_steps", "eval_max_episode_steps")):
        value = getattr(env_cfg, src, None)
        if value is not None:
            overrides[dst] = int(value)
    return dataclasses.replace(base, **overrides)


def make_envs(env_cfg: Any, *, evaluation: bool, seed: int | None = None,
              num_threads: int = 0) -> AtariEnvs:
    """Envs for an env config (``id``, ``num_envs``, ``num_eval_envs`` and the
    overrides of :func:`protocol_from_config`): evaluation or training rules."""
    protocol = protocol_from_config(env_cfg)
    if evaluation:
        return make_eval_envs(env_cfg.id, int(env_cfg.num_eval_envs), protocol, num_threads, seed)
    return make_train_envs(env_cfg.id, int(env_cfg.num_envs), protocol, num_threads, seed)
