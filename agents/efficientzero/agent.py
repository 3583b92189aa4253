"""The EfficientZero agent: the dreamer planner, replay and learner behind the agent contract.

    agent = make_agent(cfg, env_spec)                   # EfficientZero's network from cfg.network
    agent = make_agent(cfg, env_spec, model=MyModel())  # any TrainableWorldModel
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple


import jax

from agents.envs.base import EnvError, EnvSpec
from dreamer import replay as replay_lib
from dreamer.agent import ActOutput, Agent, Transition
from dreamer.config import Config
from dreamer.learner import Learner, TrainState
from dreamer.networks import EfficientZeroModel
from dreamer.planner import plan, root_diagnostics
from dreamer.sharding import along_data, by_leading_axis, replicated
from dreamer.world_model import TrainableWorldModel


class AgentState(NamedTuple):
    train: TrainState
    replay: replay_lib.ReplayState


def make_model(cfg: Config, spec: EnvSpec) -> EfficientZeroModel:
    """EfficientZero's network for ``spec``'s observations, sized by ``cfg.network``."""
    return EfficientZeroModel(cfg.network, spec.observation_shape, spec.num_actions, spec.frame_dtype)


def check_env(cfg: Config) -> EnvSpec | None:
    """Checks, before any compute, that ``cfg.env.id`` exists and suits ``cfg.network``;
    raises :class:`~agents.envs.base.EnvError` (one line). Returns the spec where it is
    known without building envs (gymnasium and MinAtar ids)."""
    import agents.envs

    kind = agents.envs.family(cfg.env.id)
    if kind == "atari":
        if cfg.network.kind != "conv":
            raise EnvError(f"{cfg.env.id} is an Atari game with image observations; preset {cfg.preset!r} uses the "
                           f"{cfg.network.kind} network (try --preset atari100k)")
        return None
    if cfg.planner.model == "simulator" and kind != "minatar":
        raise EnvError(f"--planner.model simulator plans in the env's own step function, which needs a pure JAX env "
                       f"(MinAtar/<Game>); {cfg.env.id} is stepped on the host")
    if kind == "minatar":
        from agents.envs.minatar import minatar_spec

        return minatar_spec(cfg.env.id)  # both network kinds fit 10x10 frames
    from agents.envs.gym import describe_spaces

    shape, dtype, num_actions = describe_spaces(cfg.env.id)
    if cfg.network.kind != "mlp":
        raise EnvError(f"{cfg.env.id} has vector observations {shape}; preset {cfg.preset!r} uses the "
                       f"{cfg.network.kind} network")
    return EnvSpec(num_actions, shape, dtype)


def check_model(model: TrainableWorldModel, spec: EnvSpec) -> TrainableWorldModel:
    """A user's model against the training contract and the env; one-line ``ValueError``s."""
    missing = [name for name in ("num_actions", "observation_shape", "value_support", "reward_support", "value_prefix",
                                 "value_prefix_horizon", "init", "represent", "predict", "dynamics", "project")
               if not hasattr(model, name)]
    if missing:
        raise ValueError(f"{type(model).__name__} does not satisfy dreamer.TrainableWorldModel: missing {', '.join(missing)}")
    if int(model.num_actions) != spec.num_actions:
        raise ValueError(f"{type(model).__name__}.num_actions is {model.num_actions}, the env has {spec.num_actions} actions")
    if tuple(model.observation_shape) != tuple(spec.observation_shape):
        raise ValueError(f"{type(model).__name__}.observation_shape is {tuple(model.observation_shape)}, the env's "
                         f"observations are {tuple(spec.observation_shape)}")
    return model


def make_agent(cfg: Config, spec: EnvSpec, model: TrainableWorldModel | None = None) -> Agent:
    """EfficientZero over ``cfg.env.num_envs`` env streams of ``spec``; ``model`` defaults to
    :func:`make_model`. With ``planner.model="simulator"`` acting and evaluation search the
    game's own step function (:class:`agents.envs.minatar.MinAtarSimulator`) with ``model``'s
    value and policy prior, and take the env state (``acts_on="env_state"``); the learner
    trains ``model`` as always."""
    model = make_model(cfg, spec) if model is None else check_model(model, spec)
    learner = Learner(model, cfg.learner, cfg.replay, cfg.planner)
    # Evaluation plays the search's own choice without exploration noise: pUCT's most visited
    # action (temperature 0), Gumbel's sequential-halving winner without Gumbel noise
    # (EfficientZero; EfficientZero V2's evaluation).
    greedy_planner = dataclasses.replace(cfg.planner, dirichlet_fraction=0.0, gumbel_scale=0.0)

    def init(rng) -> AgentState:
        train = learner.init(rng)
        projection_dim = 0
        if cfg.learner.consistency_targets == "swept":  # the replay keeps a sweep's consistency targets
            obs = jax.ShapeDtypeStruct((1, *spec.observation_shape), spec.frame_dtype)
            projection_dim = jax.eval_shape(  # a shape: no network pass at start-up
                lambda params, o: model.project(params, model.represent(params, o), False), train.params, obs).shape[-1]
        replay = replay_lib.init(cfg.env.num_envs, cfg.replay.capacity, spec.frame_shape, spec.frame_dtype,
                                 spec.num_actions, projection_dim)
        return AgentState(train, replay)

    planning_model, perceive = model, lambda obs: obs
    if cfg.planner.model == "simulator":
        from agents.envs.minatar import MinAtarSimulator

        planning_model = MinAtarSimulator(cfg.env.id, model)
        perceive = planning_model.encode

    def search(params, rng, obs, planner, temperature) -> ActOutput:
        out = plan(params, rng, along_data(perceive(obs)), model=planning_model, config=planner,
                   temperature=temperature)
        return ActOutput(out.action, out.action_weights, out.root_value, out.predicted_value, root_diagnostics(out))

    def act(state: AgentState, rng, obs, temperature) -> ActOutput:
        return search(state.train.params, rng, obs, cfg.planner, temperature)

    def greedy(params, rng, obs) -> ActOutput:
        return search(params, rng, obs, greedy_planner, 0.0)

    def observe(state: AgentState, t: Transition) -> AgentState:
        replay = replay_lib.add(state.replay, t.frame, t.action, t.reward, t.terminated, t.truncated, t.first,
                                t.acted.policy, t.acted.root_value, new_priority=cfg.replay.new_priority)
        return state._replace(replay=replay)

    def train(state: AgentState):
        train_state, replay, metrics = learner.train(state.train, state.replay)
        return AgentState(train_state, replay), metrics

    def shardings(state: AgentState, mesh) -> AgentState:
        """Params and optimiser replicated; the replay by env stream (its leading axis)."""
        return AgentState(jax.tree_util.tree_map(lambda _: replicated(mesh), state.train),
                          by_leading_axis(state.replay, mesh, cfg.env.num_envs))

    return Agent(init=init, act=act, greedy=greedy, observe=observe, train=train, shardings=shardings,
                 params=lambda state: state.train.params, updates_per_call=cfg.learner.updates_per_call,
                 acts_on="env_state" if cfg.planner.model == "simulator" else "observation")
