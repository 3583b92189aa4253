"""EfficientZero's networks in flax, and :class:`LearnedModel`, the learned world model.

Two families share one interface:

* ``mlp``: vector observations (CartPole and other gymnasium control tasks).
* ``conv``: EfficientZero's Atari ResNet. A downsampling representation takes a
  ``96 x 96`` frame stack to a ``6 x 6 x 64`` latent; dynamics with a residual block and
  the value-prefix LSTM; prediction heads on ``reduced_channels`` 1x1 convolutions.

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
from dreamer.world_model import InitialOutput, RecurrentOutput


def _dtype(cfg: NetworkConfig):
    return jnp.bfloat16 if cfg.dtype == "bfloat16" else jnp.float32


def normalize_latent(x: jnp.ndarray) -> jnp.ndarray:
    """Min-max scales each sample's latent to [0, 1] (over all non-batch axes)."""
    axes = tuple(range(1, x.ndim))
    lo = jnp.min(x, axis=axes, keepdims=True)
    hi = jnp.max(x, axis=axes, keepdims=True)
    return (x - lo) / jnp.maximum(hi - lo, 1e-5)


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

    @nn.compact
    def __call__(self, x):
        y = nn.Conv(self.channels, (3, 3), use_bias=False, dtype=self.dtype)(x)
        y = nn.relu(nn.LayerNorm(dtype=self.dtype)(y))
        y = nn.Conv(self.channels, (3, 3), use_bias=False, dtype=self.dtype)(y)
        y = nn.LayerNorm(dtype=self.dtype)(y)
        return nn.relu(x + y)


class ConvRepresentation(nn.Module):
    """EfficientZero's downsampling representation: 96x96 -> 6x6 (strides 2, 2, pool 2, pool 2)."""

    channels: int
    blocks: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, obs):
        c = self.channels
        x = obs.astype(self.dtype) / 255.0 if obs.dtype == jnp.uint8 else obs.astype(self.dtype)
        x = nn.Conv(c // 2, (3, 3), strides=2, use_bias=False, dtype=self.dtype)(x)
        x = nn.relu(nn.LayerNorm(dtype=self.dtype)(x))
        x = ResBlock(c // 2, self.dtype)(x)
        x = nn.Conv(c, (3, 3), strides=2, use_bias=False, dtype=self.dtype)(x)
        x = nn.relu(nn.LayerNorm(dtype=self.dtype)(x))
        x = ResBlock(c, self.dtype)(x)
        x = nn.avg_pool(x, (3, 3), strides=(2, 2), padding="SAME")
        x = ResBlock(c, self.dtype)(x)
        x = nn.avg_pool(x, (3, 3), strides=(2, 2), padding="SAME")
        for _ in range(self.blocks):
            x = ResBlock(c, self.dtype)(x)
        return x


class EfficientZeroNet(nn.Module):
    """All of the model's parameters: representation, dynamics, reward, prediction, projection."""

    cfg: NetworkConfig
    num_actions: int

    def setup(self):
        cfg, dt = self.cfg, _dtype(self.cfg)
        vbins, rbins = cfg.value_support[2], cfg.reward_support[2]
        if cfg.kind == "mlp":
            self.repr_net = MLP(cfg.hidden, cfg.latent_dim, dt)
            self.dyn_net = MLP(cfg.hidden, cfg.latent_dim, dt)
            self.value_head = MLP(cfg.head_hidden, vbins, dt, zero_last=True)
            self.policy_head = MLP(cfg.head_hidden, self.num_actions, dt, zero_last=True)
        else:
            self.repr_net = ConvRepresentation(cfg.channels, cfg.blocks, dt)
            self.dyn_conv = nn.Conv(cfg.channels, (3, 3), use_bias=False, dtype=dt)
            self.dyn_norm = nn.LayerNorm(dtype=dt)
            self.dyn_blocks = [ResBlock(cfg.channels, dt) for _ in range(cfg.blocks)]
            self.value_reduce = nn.Conv(cfg.reduced_channels, (1, 1), dtype=dt)
            self.policy_reduce = nn.Conv(cfg.reduced_channels, (1, 1), dtype=dt)
            self.reward_reduce = nn.Conv(cfg.reduced_channels, (1, 1), dtype=dt)
            self.value_head = MLP(cfg.head_hidden, vbins, dt, zero_last=True)
            self.policy_head = MLP(cfg.head_hidden, self.num_actions, dt, zero_last=True)
        if cfg.value_prefix:
            self.lstm = nn.OptimizedLSTMCell(cfg.lstm_hidden, dtype=dt)
            self.lstm_norm = nn.LayerNorm(dtype=dt)
        self.reward_head = MLP(cfg.head_hidden, rbins, dt, zero_last=True)
        self.projection = MLP((cfg.projection_hidden, cfg.projection_hidden), cfg.projection_out, dt)
        self.predictor = MLP((cfg.predictor_hidden,), cfg.projection_out, dt)

    # -- pieces --------------------------------------------------------------------------
    def represent(self, obs):
        """``[B, *obs_shape]`` -> latent ``[B, D]`` (mlp) or ``[B, 6, 6, C]`` (conv)."""
        if self.cfg.kind == "mlp":
            obs = obs.reshape(obs.shape[0], -1).astype(_dtype(self.cfg))
        return normalize_latent(self.repr_net(obs))

    def predict(self, latent):
        """latent -> (value logits ``[B, bins]``, policy logits ``[B, A]``), float32."""
        if self.cfg.kind == "mlp":
            v_in = p_in = latent
        else:
            b = latent.shape[0]
            v_in = nn.relu(self.value_reduce(latent)).reshape(b, -1)
            p_in = nn.relu(self.policy_reduce(latent)).reshape(b, -1)
        return self.value_head(v_in).astype(jnp.float32), self.policy_head(p_in).astype(jnp.float32)

    def dynamics(self, latent, carry, action):
        """(latent, LSTM carry, action ``[B]``) -> (next latent, next carry, reward logits)."""
        dt = _dtype(self.cfg)
        if self.cfg.kind == "mlp":
            a = jax.nn.one_hot(action, self.num_actions, dtype=dt)
            nxt = normalize_latent(latent + self.dyn_net(jnp.concatenate([latent, a], -1)))
            r_in = nxt
        else:
            b, hh, ww, _ = latent.shape
            plane = jnp.broadcast_to(
                (action.astype(dt) / self.num_actions)[:, None, None, None], (b, hh, ww, 1)
            )
            x = self.dyn_conv(jnp.concatenate([latent, plane], -1))
            x = nn.relu(self.dyn_norm(x) + latent)
            for block in self.dyn_blocks:
                x = block(x)
            nxt = normalize_latent(x)
            r_in = nn.relu(self.reward_reduce(nxt)).reshape(b, -1)
        if self.cfg.value_prefix:
            carry, r_feat = self.lstm(carry, r_in)
            r_in = nn.relu(self.lstm_norm(r_feat))
        return nxt, carry, self.reward_head(r_in).astype(jnp.float32)

    def project(self, latent, with_predictor: bool = True):
        """SimSiam projection (and predictor) of a latent: ``[B, projection_out]``."""
        z = self.projection(latent.reshape(latent.shape[0], -1))
        if with_predictor:
            z = self.predictor(z)
        return z.astype(jnp.float32)

    def __call__(self, obs, action):
        """Touches every parameter once (used by ``init``)."""
        latent = self.represent(obs)
        carry = initial_carry(self.cfg, obs.shape[0])
        nxt, carry, r = self.dynamics(latent, carry, action)
        v, p = self.predict(nxt)
        return v, p, r, self.project(nxt)



def initial_carry(cfg: NetworkConfig, batch: int):
    """Zero LSTM carry ``(c, h)``, each ``[B, lstm_hidden]`` (``[B, 1]`` without value prefix)."""
    h = cfg.lstm_hidden if cfg.value_prefix else 1
    dt = _dtype(cfg)
    return (jnp.zeros((batch, h), dt), jnp.zeros((batch, h), dt))


class LearnedModel:
    """The learned world model: a :class:`~dreamer.world_model.WorldModel` over flax params.

    The planner's state is ``(latent, lstm_carry)``. ``*_logits`` methods return the raw
    categorical outputs the losses need; the ``*_inference`` methods decode them.
    """

    def __init__(self, cfg: NetworkConfig, observation_shape: tuple[int, ...], num_actions: int, observation_dtype=None):
        if cfg.kind == "conv" and len(observation_shape) != 3:
            raise ValueError(
                f"the conv network expects image observations [H, W, C], got shape {tuple(observation_shape)}"
            )
        if cfg.kind == "mlp" and len(observation_shape) != 1:
            raise ValueError(
                f"the mlp network expects flat vector observations [D], got shape {tuple(observation_shape)}"
            )
        self.cfg = cfg
        self.num_actions = int(num_actions)
        self.observation_shape = tuple(int(s) for s in observation_shape)
        self.observation_dtype = observation_dtype
        self.value_prefix = cfg.value_prefix
        self.net = EfficientZeroNet(cfg, self.num_actions)
        self.value_support = Support(*cfg.value_support)
        self.reward_support = Support(*cfg.reward_support)

    def init(self, rng: jnp.ndarray):
        dtype = self.observation_dtype or jnp.float32
        obs = jnp.zeros((1, *self.observation_shape), dtype)
        return self.net.init(rng, obs, jnp.zeros((1,), jnp.int32))

    # -- raw outputs (training) --------------------------------------------------------------
    def represent(self, params, obs):
        return self.net.apply(params, obs, method=EfficientZeroNet.represent)

    def predict_logits(self, params, latent):
        return self.net.apply(params, latent, method=EfficientZeroNet.predict)

    def dynamics_logits(self, params, latent, carry, action):
        return self.net.apply(params, latent, carry, action, method=EfficientZeroNet.dynamics)

    def project(self, params, latent, with_predictor: bool = True):
        return self.net.apply(params, latent, with_predictor, method=EfficientZeroNet.project)

    def initial_carry(self, batch: int):
        return initial_carry(self.cfg, batch)

    # -- the WorldModel contract ---------------------------------------------------------
    def initial_inference(self, params, obs) -> InitialOutput:
        latent = self.represent(params, obs)
        v_logits, p_logits = self.predict_logits(params, latent)
        state = (latent, self.initial_carry(obs.shape[0]))
        return InitialOutput(state, self.value_support.decode_logits(v_logits), p_logits)

    def recurrent_inference(self, params, state, action) -> RecurrentOutput:
        latent, carry = state
        nxt, carry, r_logits = self.dynamics_logits(params, latent, carry, action)
        v_logits, p_logits = self.predict_logits(params, nxt)
        return RecurrentOutput(
            (nxt, carry),
            self.reward_support.decode_logits(r_logits),
            self.value_support.decode_logits(v_logits),
            p_logits,
        )

    def reset_value_prefix(self, state):
        latent, carry = state
        return latent, jax.tree_util.tree_map(jnp.zeros_like, carry)
