"""Typed, frozen configuration: one dataclass per concern, composed into :class:`Config`.

Every dataclass validates itself on construction and raises ``ValueError`` with the
field name, the value given and what is allowed. Frozen dataclasses are hashable, so a
config can be closed over by jitted functions without retracing.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise ValueError(message)


def _positive(obj: Any, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        _require(value > 0, f"{type(obj).__name__}.{name} must be > 0, got {value!r}")


def _unit(obj: Any, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        _require(0.0 <= value <= 1.0, f"{type(obj).__name__}.{name} must be in [0, 1], got {value!r}")


def _choice(obj: Any, name: str, allowed: tuple[str, ...]) -> None:
    value = getattr(obj, name)
    _require(value in allowed, f"{type(obj).__name__}.{name} must be one of {allowed}, got {value!r}")


@dataclass(frozen=True)
class PlannerConfig:
    """Search settings. Defaults are EfficientZero's (``../shared/PROTOCOL.md``)."""

    search: str = "puct"  # "puct" (mctx.muzero_policy) or "gumbel" (mctx.gumbel_muzero_policy)
    model: str = "learned"  # what acting searches in: "learned" (the world model) or "simulator" (the env's own step function, pure JAX envs: MinAtar), with the learned value and policy prior
    num_simulations: int = 50  # search simulations per agent step (0: no search, the policy prior acts and is its own target)
    discount: float = 0.997**4  # per agent step (0.997 per frame, action repeat 4)
    pb_c_init: float = 1.25  # pUCT exploration constant c1
    pb_c_base: float = 19652.0  # pUCT visit-count scale c2 (exploration grows as visits pass it)
    dirichlet_alpha: float = 0.3  # concentration of the Dirichlet root noise
    dirichlet_fraction: float = 0.25  # share of root noise in the prior policy (0 disables it)
    # pUCT: "min_max" (EfficientZero, tree-wide) or "parent_siblings" (mctx's). Gumbel:
    # "completed_min_max" (EfficientZero V2: completed Q over the tree-wide min-max with a
    # range floor) or "completed_mix" (mctx's default). None picks the EfficientZero one.
    qtransform: str | None = None  # Q normalisation: "min_max", "parent_siblings", "completed_min_max", "completed_mix" or None (by search)
    min_max_floor: float = 0.01  # range floor of the tree-wide min-max normalisations (EfficientZero, V2: 0.01)
    max_depth: int | None = None  # deepest search tree level (None: unbounded, up to num_simulations)
    max_num_considered_actions: int = 16  # Gumbel only: root actions kept for sequential halving
    gumbel_scale: float = 1.0  # Gumbel only: scale of the Gumbel noise on root logits (0: deterministic)
    # Gumbel's completed Q values are scaled by (maxvisit_init + max child visits) * value_scale
    # before they are added to the logits. "completed_mix" with rescale_values=True first
    # min-max normalises them among the node's children, so even a tiny Q gap between two
    # actions becomes a full unit; False keeps Q on the value scale.
    value_scale: float = 0.1  # Gumbel: scale of the completed Q values added to the logits (V2's c_scale)
    maxvisit_init: float = 50.0  # Gumbel: visit offset in the Q scale, maxvisit_init + max visits (V2's c_visit)
    rescale_values: bool = True  # completed_mix only: min-max normalise Q among the node's children first

    def __post_init__(self):
        self.validate()

    @property
    def resolved_qtransform(self) -> str:
        if self.qtransform is not None:
            return self.qtransform
        return "min_max" if self.search == "puct" else "completed_min_max"

    def validate(self) -> None:
        _choice(self, "search", ("puct", "gumbel"))
        _choice(self, "model", ("learned", "simulator"))
        _choice(self, "qtransform", (None, "min_max", "parent_siblings", "completed_mix", "completed_min_max"))
        _require(
            isinstance(self.num_simulations, int) and self.num_simulations >= 0,
            f"PlannerConfig.num_simulations must be an integer >= 0, got {self.num_simulations!r}",
        )
        _unit(self, "discount", "dirichlet_fraction")
        _positive(self, "dirichlet_alpha", "min_max_floor", "max_num_considered_actions",
                  "value_scale", "maxvisit_init")
        _require(
            self.max_depth is None or self.max_depth >= 1,
            f"PlannerConfig.max_depth must be None or >= 1, got {self.max_depth!r}",
        )


@dataclass(frozen=True)
class NetworkConfig:
    """World-model network sizes."""

    kind: str = "mlp"  # "mlp" for vector observations, "conv" for images (EfficientZero ResNet)
    latent_dim: int = 64  # mlp: latent vector size
    hidden: tuple[int, ...] = (128, 128)  # mlp: hidden widths of representation / dynamics
    encoder_channels: tuple[int, ...] = ()  # mlp: 3x3 convolutions applied to image observations before flattening
    head_hidden: tuple[int, ...] = (64,)  # hidden widths of value / policy / reward heads
    channels: int = 64  # conv: residual channels (EfficientZero: 64)
    blocks: int = 1  # conv: residual blocks per stage (EfficientZero: 1)
    reduced_channels: int = 16  # conv: head channels (EfficientZero: 16)
    downsample: bool = True  # conv: EfficientZero's 16x downsampling (96x96 -> 6x6); False keeps small frames' size
    lstm_hidden: int = 64  # value-prefix LSTM hidden size (EfficientZero: 512)
    projection_hidden: int = 256  # SimSiam projection hidden width (EfficientZero: 1024)
    projection_out: int = 256  # SimSiam projection output size (EfficientZero: 1024)
    predictor_hidden: int = 128  # SimSiam predictor hidden width (EfficientZero: 512)
    value_support: tuple[float, float, int] = (-20.0, 20.0, 41)  # value categorical support: low high bins (h-space)
    reward_support: tuple[float, float, int] = (-20.0, 20.0, 41)  # reward / value-prefix support: low high bins (h-space)
    value_prefix: bool = True  # EfficientZero's LSTM value prefix instead of per-step reward
    value_prefix_horizon: int = 5  # value-prefix reset period in unroll / search steps (EfficientZero: 5)
    latent_norm: bool = True  # min-max scale latents to [0, 1] (MuZero; EfficientZero's Atari config turns it off)
    reward_grad_scale: float = 1.0  # gradient scale on the reward head's path into each unrolled latent (EfficientZero: 0.5, as on the latent's other paths)
    conv_norm: str = "spatial"  # conv: layer norm over "spatial" (H, W, C) per sample, or "channel" (C per pixel)
    dtype: str = "float32"  # compute dtype: "float32" or "bfloat16"

    def __post_init__(self):
        _choice(self, "kind", ("mlp", "conv"))
        _choice(self, "dtype", ("float32", "bfloat16"))
        _choice(self, "conv_norm", ("spatial", "channel"))
        _positive(self, "latent_dim", "channels", "blocks", "reduced_channels", "lstm_hidden", "value_prefix_horizon")
        _positive(self, "projection_hidden", "projection_out", "predictor_hidden", "reward_grad_scale")
        for name in ("value_support", "reward_support"):
            low, high, bins = getattr(self, name)
            _require(high > low and bins >= 2, f"NetworkConfig.{name} must be (low < high, bins >= 2), got {(low, high, bins)}")


@dataclass(frozen=True)
class ReplayConfig:
    """Prioritised replay of per-env streams; capacity counts transitions over all envs."""

    capacity: int = 100_000  # transitions kept, over all envs
    batch_size: int = 256  # sequences per update
    alpha: float = 0.6  # priority exponent (EfficientZero: 0.6)
    beta: float = 0.4  # importance-weight exponent at the start, annealed to 1
    beta_anneal_updates: int = 100_000  # updates over which beta anneals linearly to 1
    min_size: int = 2_000  # transitions before training starts (EfficientZero: 2,000)
    frame_stack: int = 1  # frames stacked at sample time (Atari: 4)
    priority_eps: float = 1e-6  # added to new priorities so no transition gets probability 0
    new_priority: str = "max"  # new data's priority: "max" (the buffer's current max, EfficientZero) or "running_max" (the largest ever)

    def __post_init__(self):
        _positive(self, "capacity", "batch_size", "min_size", "frame_stack", "beta_anneal_updates")
        _choice(self, "new_priority", ("max", "running_max"))
        _unit(self, "alpha", "beta")


@dataclass(frozen=True)
class LearnerConfig:
    """Optimisation and targets. Defaults are EfficientZero's Atari settings."""

    optimizer: str = "sgd"  # "sgd" (momentum 0.9, EfficientZero) or "adamw"
    learning_rate: float = 0.2  # peak learning rate, after warm-up
    warmup_updates: int = 1_000  # linear warm-up (EfficientZero: 1% of 100k)
    lr_decay_updates: int = 100_000  # lr x lr_decay_factor after this many updates
    lr_decay_factor: float = 0.1  # learning-rate multiplier applied after lr_decay_updates
    momentum: float = 0.9  # sgd momentum (adamw ignores it)
    weight_decay: float = 1e-4  # L2 weight decay (decoupled for adamw)
    max_grad_norm: float = 5.0  # global gradient-norm clip
    unroll_steps: int = 5  # model unroll length K per training sequence
    td_steps: int = 5  # n of the n-step bootstrapped value target
    td_age_step: int = 30_000  # off-policy correction: td = clip(td_steps - age // td_age_step, 1, td_steps)
    target_update_interval: int = 200  # updates between target-param refreshes
    # "batch": re-search the policy targets of each sampled batch and bootstrap from the target
    # network (EfficientZero); "sweep": re-plan the whole replay once per target period and
    # gather stored targets (dreamer/reanalyze.py).
    reanalyze: str = "batch"  # how policy and bootstrap targets are refreshed: "batch" or "sweep"
    reanalyze_fraction: float = 0.99  # reanalyze="batch": fraction of the batch whose policy targets are re-searched
    sweep_chunk: int = 1024  # reanalyze="sweep": roots per search call of a sweep (large on an accelerator)
    sweep_fraction: float = 1.0  # reanalyze="sweep": share of the replay each sweep re-plans, in turn (1: all of it; 0.1: every position once per 10 target periods)
    # "online": project the real next observations with the online params at every update
    # (EfficientZero, K extra representation passes per sample); "swept": the projections a
    # reanalysis sweep stored with the target params (needs reanalyze="sweep")
    consistency_targets: str = "online"  # where the temporal-consistency targets come from: "online" or "swept"
    value_loss_weight: float = 0.25  # weight of the value loss
    reward_loss_weight: float = 1.0  # weight of the reward / value-prefix loss
    policy_loss_weight: float = 1.0  # weight of the policy loss
    consistency_loss_weight: float = 2.0  # weight of the SimSiam self-supervised consistency loss
    updates_per_call: int = 1  # updates scanned inside one jitted train call
    augment: bool = False  # random shift + intensity (images only)
    flat_optimizer: bool = False  # run the optimiser over one flat buffer of all params (fewer, larger kernels)
    scale_loss_by_unroll: bool = True  # loss x 1/unroll_steps before gradient clipping (EfficientZero and V2)
    reanalyze_with: str = "target"  # params of the reanalysis search: "target" (EfficientZero) or "online"

    def __post_init__(self):
        _choice(self, "optimizer", ("sgd", "adamw"))
        _choice(self, "reanalyze_with", ("target", "online"))
        _choice(self, "reanalyze", ("batch", "sweep"))
        _choice(self, "consistency_targets", ("online", "swept"))
        _require(self.consistency_targets == "online" or self.reanalyze == "sweep",
                 "learner.consistency_targets='swept' needs learner.reanalyze='sweep'")
        _require(self.reanalyze != "sweep" or self.target_update_interval % self.updates_per_call == 0,
                 f"learner.target_update_interval ({self.target_update_interval}) must be a multiple of "
                 f"learner.updates_per_call ({self.updates_per_call}) with reanalyze='sweep'")
        _positive(self, "learning_rate", "unroll_steps", "td_steps", "td_age_step")
        _positive(self, "target_update_interval", "updates_per_call", "max_grad_norm", "lr_decay_updates", "sweep_chunk")
        _unit(self, "reanalyze_fraction", "momentum", "lr_decay_factor")
        _require(0.0 < self.sweep_fraction <= 1.0,
                 f"LearnerConfig.sweep_fraction must be in (0, 1], got {self.sweep_fraction!r}")
        _require(self.sweep_fraction == 1.0 or self.consistency_targets == "online",
                 "learner.consistency_targets='swept' needs learner.sweep_fraction=1 (every position swept each period)")
        _require(self.warmup_updates >= 0, f"LearnerConfig.warmup_updates must be >= 0, got {self.warmup_updates}")
        _require(self.weight_decay >= 0, f"LearnerConfig.weight_decay must be >= 0, got {self.weight_decay}")


@dataclass(frozen=True)
class EnvConfig:
    """Which environment and how many copies."""

    id: str = "CartPole-v0"  # gymnasium env id or Atari game name ("Breakout", "ALE/Pong-v5")
    num_envs: int = 8  # parallel training envs
    num_eval_envs: int = 10  # parallel evaluation envs
    eval_episodes: int = 10  # whole episodes per evaluation
    max_episode_steps: int | None = None  # training cap (None: the env's own)
    eval_max_episode_steps: int | None = None  # evaluation cap (None: the env's own)
    # Atari only (see agents/envs/atari.py for the protocol)
    frame_size: int = 96  # Atari only: square frame side in pixels
    grayscale: bool = False  # Atari only: gray frames instead of RGB

    def __post_init__(self):
        _positive(self, "num_envs", "num_eval_envs", "eval_episodes", "frame_size")


@dataclass(frozen=True)
class LoopConfig:
    """The env loop: budget, replay ratio, schedules, logging and checkpoint clocks."""

    env_steps: int = 100_000  # total agent steps over all training envs
    replay_ratio: float = 1.0  # updates per agent step
    extra_updates: int = 0  # updates after data collection ends (EfficientZero: 20k)
    temperature_schedule: tuple[tuple[float, float], ...] = ((0.5, 1.0), (0.75, 0.5), (1.0, 0.25))  # (progress limit, temperature) pairs: act at the first whose limit exceeds the share of env_steps done; pUCT samples visit counts at it, Gumbel search ignores it (its action is the sequential-halving winner)
    epsilon_schedule: tuple[tuple[float, float], ...] = ()  # (progress limit, epsilon) pairs read as temperature_schedule: with probability epsilon an env plays a uniformly random action instead of the search's (any search kind); () never
    eval_every: int = 5_000  # agent steps between evaluations
    log_every_s: float = 10.0  # seconds between metric log lines
    checkpoint_every_s: float = 600.0  # seconds between checkpoints
    keep_checkpoints: int = 2  # newest checkpoints kept on disk
    thresholds: tuple[float, ...] = ()  # eval returns whose first crossing summary.json records (env steps, seconds)
    stop_when_held: int = 0  # stop once the eval mean reached thresholds[0] this many evaluations in a row (0: never)

    def __post_init__(self):
        _positive(self, "env_steps", "replay_ratio", "eval_every", "log_every_s", "checkpoint_every_s", "keep_checkpoints")
        _require(self.extra_updates >= 0, f"LoopConfig.extra_updates must be >= 0, got {self.extra_updates}")
        _require(self.stop_when_held >= 0, f"LoopConfig.stop_when_held must be >= 0, got {self.stop_when_held}")
        for name in ("temperature_schedule", "epsilon_schedule"):
            for pair in getattr(self, name):
                _require(len(pair) == 2, f"LoopConfig.{name} takes (progress limit, value) pairs, got {pair!r}")
        _require(all(0.0 <= e <= 1.0 for _, e in self.epsilon_schedule),
                 f"LoopConfig.epsilon_schedule values must be in [0, 1], got {self.epsilon_schedule!r}")
        _require(not self.stop_when_held or len(self.thresholds) > 0,
                 "LoopConfig.stop_when_held needs a threshold to hold: set loop.thresholds")


@dataclass(frozen=True)
class Config:
    """One experiment: every concern, a seed and the preset it came from."""

    preset: str = "cartpole"  # named defaults that the other flags override (agents/efficientzero/presets.py)
    seed: int = 0  # seed of the envs, network initialisation and search
    env: EnvConfig = field(default_factory=EnvConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    planner: PlannerConfig = field(default_factory=PlannerConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)

    def __post_init__(self):
        rep, learn = self.replay, self.learner
        window = learn.unroll_steps + learn.td_steps + rep.frame_stack
        per_env = rep.capacity // max(self.env.num_envs, 1)
        _require(
            per_env > window,
            f"replay.capacity / env.num_envs = {per_env} steps per env must exceed the sample window "
            f"(unroll_steps + td_steps + frame_stack = {window})",
        )
        _require(
            rep.batch_size <= rep.min_size,
            f"replay.batch_size ({rep.batch_size}) must not exceed replay.min_size ({rep.min_size}), "
            "the replay size at the start of training",
        )
        _require(rep.min_size <= rep.capacity, f"replay.min_size ({rep.min_size}) must not exceed replay.capacity ({rep.capacity})")
        _require(
            self.network.value_prefix is False or learn.unroll_steps >= 1,
            "learner.unroll_steps must be >= 1",
        )
        _require(
            self.planner.model == "learned" or (learn.reanalyze == "batch" and learn.reanalyze_fraction == 0.0),
            "planner.model simulator plans from env states, which the replay does not keep: policy reanalysis "
            "needs the learned model (set learner.reanalyze batch and learner.reanalyze_fraction 0)",
        )

    def replace(self, **changes: Any) -> "Config":
        return dataclasses.replace(self, **changes)


def to_dict(cfg: Any) -> dict:
    """A JSON-ready nested dict of a config."""
    return dataclasses.asdict(cfg)


def from_dict(data: dict) -> Config:
    """Inverse of :func:`to_dict` (lists become tuples again)."""

    def build(cls, values):
        kwargs = {}
        hints = {f.name: f for f in dataclasses.fields(cls)}
        for name, value in values.items():
            if name not in hints:
                raise ValueError(f"unknown config field {cls.__name__}.{name}")
            sub = _SECTIONS.get(name) if cls is Config else None
            if sub is not None:
                value = build(sub, value)
            elif isinstance(value, list):
                value = _tuplify(value)
            kwargs[name] = value
        return cls(**kwargs)

    return build(Config, data)


def _dotted(cfg: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(cfg, dict):
        return {prefix or "<root>": cfg}
    return {k: v for key, sub in cfg.items() for k, v in _dotted(sub, f"{prefix}.{key}".lstrip(".")).items()}


def _same(a: Any, b: Any) -> bool:  # 1 == 1.0 and NaN == NaN here; True != 1
    return (a == b or a != a and b != b) and (type(a) is type(b) or {type(a), type(b)} <= {int, float})


def config_differences(saved: dict, expected: dict, allowed: tuple[str, ...] = ()) -> list[tuple[str, Any, Any]]:
    """``(dotted field, saved value, expected value)`` where two :func:`to_dict` configs differ,
    leaving out the dotted paths in ``allowed`` and below them. A field that ``saved`` lacks
    (the config was written before the field existed) counts as its default, so runs saved by
    an older version resume, and are compared, as what they were."""
    defaults = _dotted(to_dict(Config()))
    saved, expected = _dotted(saved), _dotted(expected)
    diffs = [(k, saved.get(k, defaults.get(k, "<missing>")), expected.get(k, "<missing>")) for k in {**saved, **expected}]
    return sorted(d for d in diffs if not _same(*d[1:]) and not any(f"{d[0]}.".startswith(f"{a}.") for a in allowed))


def _tuplify(value):
    if isinstance(value, list):
        return tuple(_tuplify(v) for v in value)
    return value


_SECTIONS = {
    "env": EnvConfig,
    "network": NetworkConfig,
    "planner": PlannerConfig,
    "replay": ReplayConfig,
    "learner": LearnerConfig,
    "loop": LoopConfig,
}
