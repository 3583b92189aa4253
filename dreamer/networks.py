"""EfficientZero's networks in flax, and :class:`EfficientZeroModel`, the learned world model.

Two network families implement one interface (``represent``, ``predict``, ``dynamics``,
``project``) over a shared trunk (value-prefix LSTM, reward head, SimSiam projection):

* :class:`MLPNet`: vector observations (CartPole and other gymnasium control tasks).
* :class:`ConvNet`: EfficientZero's Atari ResNet. A downsampling representation takes a
  ``96 x 96`` frame stack to a ``6 x 6 x 64`` latent; dynamics with a residual block and
  the value-prefix LSTM; prediction heads on ``reduced_channels`` 1x1 convolutions.

:data:`FAMILIES` maps ``NetworkConfig.kind`` to its class; nothing else branches on it.

Normalisation: EfficientZero uses batch norm. We use layer norm instead: it keeps the
networks pure functions of ``params`` (no batch statistics to carry through acting,
reanalysis and the unroll) and makes acting independent of the batch composition.
Latent states are min-max scaled to [0, 1] per sample, as in MuZero and EfficientZero.

Shapes: ``B`` batch, ``A`` actions, ``H x W x C`` images, ``D`` latent features.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from dreamer.config import NetworkConfig
from dreamer.scalar import Support
from dreamer.world_model import LatentState, LearnedWorldModel, scale_gradient


def _dtype(cfg: NetworkConfig):
    return jnp.bfloat16 if cfg.dtype == "bfloat16" else jnp.float32


def normalize_latent(x: jnp.ndarray) -> jnp.ndarray:
    """Min-max scales each sample's latent to [0, 1] (over all non-batch axes)."""
    axes = tuple(range(1, x.ndim))
    lo = jnp.min(x, axis=axes, keepdims=True)
    hi = jnp.max(x, axis=axes, keepdims=True)
    return (x - lo) / jnp.maximum(hi - lo, 1e-5)


def conv_norm(kind: str, dtype) -> nn.Module:
    """Layer norm for ``[B, H, W, C]`` maps: over (H, W, C) per sample ("spatial", keeps how
    bright one position is against another, as EfficientZero's batch norm does) or over C at
    each position ("channel")."""
    axes = (-3, -2, -1) if kind == "spatial" else -1
    return nn.LayerNorm(reduction_axes=axes, feature_axes=-1, dtype=dtype)


class MLP(nn.Module):
    """Dense -> LayerNorm -> ReLU stack; the last layer is linear (optionally zero-init)."""

    features: Sequence[int]
    out: int
    dtype: Any = jnp.float32
    zero_last: bool = False

    @nn.compact
    def __call__(self, x):
        for f in self.features:
            x = nn.relu(nn.LayerNorm(dtype=self.dtype)(nn.Dense(f, dtype=self.dtype)(x)))
        init = nn.initializers.zeros if self.zero_last else nn.initializers.lecun_normal()
        return nn.Dense(self.out, dtype=self.dtype, kernel_init=init)(x)


class ResBlock(nn.Module):
    channels: int
    dtype: Any = jnp.float32
    norm: str = "channel"

    @nn.compact
    def __call__(self, x):
        y = nn.Conv(self.channels, (3, 3), use_bias=False, dtype=self.dtype)(x)
        y = nn.relu(conv_norm(self.norm, self.dtype)(y))
        y = nn.Conv(self.channels, (3, 3), use_bias=False, dtype=self.dtype)(y)
        y = conv_norm(self.norm, self.dtype)(y)
        return nn.relu(x + y)


class ConvRepresentation(nn.Module):
    """EfficientZero's downsampling representation: 96x96 -> 6x6 (strides 2, 2, pool 2, pool 2).

    ``downsample=False`` keeps the frame's resolution (small frames such as MinAtar's
    10x10): one 3x3 convolution to ``channels``, then the residual blocks.
    """

    channels: int
    blocks: int
    dtype: Any = jnp.float32
    downsample: bool = True
    norm: str = "channel"

    @nn.compact
    def __call__(self, obs):
        c, dt, norm = self.channels, self.dtype, self.norm
        x = obs.astype(dt) / 255.0 if obs.dtype == jnp.uint8 else obs.astype(dt)
        if not self.downsample:
            x = nn.relu(conv_norm(norm, dt)(nn.Conv(c, (3, 3), use_bias=False, dtype=dt)(x)))
            for _ in range(self.blocks):
                x = ResBlock(c, dt, norm)(x)
            return x
        x = nn.Conv(c // 2, (3, 3), strides=2, use_bias=False, dtype=dt)(x)
        x = nn.relu(conv_norm(norm, dt)(x))
        x = ResBlock(c // 2, dt, norm)(x)
        x = nn.Conv(c, (3, 3), strides=2, use_bias=False, dtype=dt)(x)
        x = nn.relu(conv_norm(norm, dt)(x))
        x = ResBlock(c, dt, norm)(x)
        x = nn.avg_pool(x, (3, 3), strides=(2, 2), padding="SAME")
        x = ResBlock(c, dt, norm)(x)
        x = nn.avg_pool(x, (3, 3), strides=(2, 2), padding="SAME")
        for _ in range(self.blocks):
            x = ResBlock(c, dt, norm)(x)
        return x


class _Net(nn.Module):
    """The parts every family shares: value-prefix LSTM, reward head, projection, predictor.

    A family's ``setup_family`` builds its representation, dynamics and prediction layers;
    ``_trunk_latent`` / ``_head_inputs`` / ``_reward_input`` say how they are wired.
    """

    cfg: NetworkConfig
    num_actions: int

    def setup(self):
        cfg, dt = self.cfg, _dtype(self.cfg)
        self.setup_family()
        if cfg.value_prefix:
            self.lstm = nn.OptimizedLSTMCell(cfg.lstm_hidden, dtype=dt)
            self.lstm_norm = nn.LayerNorm(dtype=dt)
        self.reward_head = MLP(cfg.head_hidden, cfg.reward_support[2], dt, zero_last=True)
        self.projection = MLP((cfg.projection_hidden, cfg.projection_hidden), cfg.projection_out, dt)
        self.predictor = MLP((cfg.predictor_hidden,), cfg.projection_out, dt)

    def setup_family(self):
        raise NotImplementedError

    def _normalize(self, latent):
        return normalize_latent(latent) if self.cfg.latent_norm else latent

    def represent(self, obs):
        """``[B, *obs_shape]`` -> latent."""
        raise NotImplementedError

    def predict(self, latent):
        """latent -> (value logits ``[B, bins]``, policy logits ``[B, A]``), float32."""
        v_in, p_in = self._head_inputs(latent)
        return self.value_head(v_in).astype(jnp.float32), self.policy_head(p_in).astype(jnp.float32)

    def dynamics(self, latent, memory, action):
        """(latent, LSTM carry, action ``[B]``) -> (next latent, next carry, reward logits).

        The reward head's gradient enters the next latent scaled by ``reward_grad_scale``:
        EfficientZero halves the gradient into each unrolled latent on every path, the
        reward's included, while the learner's 1/2 (dreamer/losses.py) acts on the latent
        this returns, which the reward head has already read."""
        nxt = self._next_latent(latent, action)
        r_in = self._reward_input(scale_gradient(nxt, self.cfg.reward_grad_scale))
        if self.cfg.value_prefix:
            memory, r_feat = self.lstm(memory, r_in)
            r_in = nn.relu(self.lstm_norm(r_feat))
        return nxt, memory, self.reward_head(r_in).astype(jnp.float32)

    def project(self, latent, with_predictor: bool = True):
        """SimSiam projection (and predictor) of a latent: ``[B, projection_out]``."""
        z = self.projection(latent.reshape(latent.shape[0], -1))
        if with_predictor:
            z = self.predictor(z)
        return z.astype(jnp.float32)

    def __call__(self, obs, action):
        """Touches every parameter once (used by ``init``)."""
        latent = self.represent(obs)
        nxt, _, r = self.dynamics(latent, initial_memory(self.cfg, obs.shape[0]), action)
        v, p = self.predict(nxt)
        return v, p, r, self.project(nxt)


class MLPNet(_Net):
    """Vector observations: MLP representation and residual MLP dynamics on a ``[B, D]`` latent.

    With ``encoder_channels`` an image observation first goes through that many 3x3
    convolutions (stride 1, ReLU) before it is flattened: small frames such as MinAtar's
    keep a convolution's translation-shared features (as DQN's MinAtar network does) while
    the dynamics stay a cheap MLP.
    """

    def setup_family(self):
        cfg, dt = self.cfg, _dtype(self.cfg)
        self.encoder = [nn.Conv(c, (3, 3), dtype=dt) for c in cfg.encoder_channels]
        self.repr_net = MLP(cfg.hidden, cfg.latent_dim, dt)
        self.dyn_net = MLP(cfg.hidden, cfg.latent_dim, dt)
        self.value_head = MLP(cfg.head_hidden, cfg.value_support[2], dt, zero_last=True)
        self.policy_head = MLP(cfg.head_hidden, self.num_actions, dt, zero_last=True)

    def represent(self, obs):
        x = obs.astype(_dtype(self.cfg))
        for conv in self.encoder:
            x = nn.relu(conv(x))
        return self._normalize(self.repr_net(x.reshape(x.shape[0], -1)))

    def _head_inputs(self, latent):
        return latent, latent

    def _next_latent(self, latent, action):
        a = jax.nn.one_hot(action, self.num_actions, dtype=_dtype(self.cfg))
        return self._normalize(latent + self.dyn_net(jnp.concatenate([latent, a], -1)))

    def _reward_input(self, latent):
        return latent


class ConvNet(_Net):
    """Images: EfficientZero's ResNet on a ``[B, h, w, C]`` latent; the action enters as a plane."""

    def setup_family(self):
        cfg, dt = self.cfg, _dtype(self.cfg)
        self.repr_net = ConvRepresentation(cfg.channels, cfg.blocks, dt, cfg.downsample, cfg.conv_norm)
        self.dyn_conv = nn.Conv(cfg.channels, (3, 3), use_bias=False, dtype=dt)
        self.dyn_norm = conv_norm(cfg.conv_norm, dt)
        self.dyn_blocks = [ResBlock(cfg.channels, dt, cfg.conv_norm) for _ in range(cfg.blocks)]
        self.pred_blocks = [ResBlock(cfg.channels, dt, cfg.conv_norm) for _ in range(cfg.blocks)]
        self.value_reduce = nn.Conv(cfg.reduced_channels, (1, 1), dtype=dt)
        self.policy_reduce = nn.Conv(cfg.reduced_channels, (1, 1), dtype=dt)
        self.reward_reduce = nn.Conv(cfg.reduced_channels, (1, 1), dtype=dt)
        self.value_head = MLP(cfg.head_hidden, cfg.value_support[2], dt, zero_last=True)
        self.policy_head = MLP(cfg.head_hidden, self.num_actions, dt, zero_last=True)

    def represent(self, obs):
        return self._normalize(self.repr_net(obs))

    def _head_inputs(self, latent):
        b = latent.shape[0]
        for block in self.pred_blocks:  # EfficientZero's prediction trunk
            latent = block(latent)
        return (nn.relu(self.value_reduce(latent)).reshape(b, -1),
                nn.relu(self.policy_reduce(latent)).reshape(b, -1))

    def _next_latent(self, latent, action):
        dt = _dtype(self.cfg)
        b, hh, ww, _ = latent.shape
        plane = jnp.broadcast_to((action.astype(dt) / self.num_actions)[:, None, None, None], (b, hh, ww, 1))
        x = self.dyn_conv(jnp.concatenate([latent, plane], -1))
        x = nn.relu(self.dyn_norm(x) + latent)
        for block in self.dyn_blocks:
            x = block(x)
        return self._normalize(x)

    def _reward_input(self, latent):
        return nn.relu(self.reward_reduce(latent)).reshape(latent.shape[0], -1)


FAMILIES: dict[str, type[_Net]] = {"mlp": MLPNet, "conv": ConvNet}
OBSERVATION_RANK = {"mlp": None, "conv": 3}  # mlp: any shape, flattened; conv: [H, W, C] images


def initial_memory(cfg: NetworkConfig, batch: int):
    """Zero LSTM carry ``(c, h)``, each ``[B, lstm_hidden]``; ``()`` without a value prefix."""
    if not cfg.value_prefix:
        return ()
    dt = _dtype(cfg)
    return (jnp.zeros((batch, cfg.lstm_hidden), dt), jnp.zeros((batch, cfg.lstm_hidden), dt))


class EfficientZeroModel(LearnedWorldModel):
    """EfficientZero's learned world model over flax params (a :class:`TrainableWorldModel`).

    Its state is ``LatentState(latent, memory)``, the memory being the value-prefix LSTM
    carry. Planning (``initial_inference`` / ``recurrent_inference``) comes from
    :class:`~dreamer.world_model.LearnedWorldModel`.
    """

    def __init__(self, cfg: NetworkConfig, observation_shape: tuple[int, ...], num_actions: int, observation_dtype=None):
        rank = OBSERVATION_RANK[cfg.kind]
        if rank is not None and len(observation_shape) != rank:
            kind = "image observations [H, W, C]" if rank == 3 else "flat vector observations [D]"
            raise ValueError(f"the {cfg.kind} network expects {kind}, got shape {tuple(observation_shape)}")
        if cfg.kind == "mlp" and cfg.encoder_channels and len(observation_shape) != 3:
            raise ValueError(f"network.encoder_channels needs image observations [H, W, C], got shape {tuple(observation_shape)}")
        self.cfg = cfg
        self.num_actions = int(num_actions)
        self.observation_shape = tuple(int(s) for s in observation_shape)
        self.observation_dtype = observation_dtype
        self.value_prefix = cfg.value_prefix
        self.value_prefix_horizon = cfg.value_prefix_horizon
        self.net = FAMILIES[cfg.kind](cfg, self.num_actions)
        self.value_support = Support(*cfg.value_support)
        self.reward_support = Support(*cfg.reward_support)

    def init(self, rng: jnp.ndarray):
        dtype = self.observation_dtype or jnp.float32
        obs = jnp.zeros((1, *self.observation_shape), dtype)
        return self.net.init(rng, obs, jnp.zeros((1,), jnp.int32))

    def represent(self, params, obs) -> LatentState:
        latent = self.net.apply(params, obs, method="represent")
        return LatentState(latent, initial_memory(self.cfg, obs.shape[0]))

    def predict(self, params, state: LatentState):
        return self.net.apply(params, state.latent, method="predict")

    def dynamics(self, params, state: LatentState, action):
        latent, memory, r_logits = self.net.apply(params, state.latent, state.memory, action, method="dynamics")
        return LatentState(latent, memory), r_logits

    def project(self, params, state: LatentState, with_predictor: bool = True):
        return self.net.apply(params, state.latent, with_predictor, method="project")
