"""A world model written outside the library trains through the whole loop.

``TinyModel`` below is a small pure-JAX model (dict params, no flax, nothing from
``dreamer.networks``) that implements the training contract by subclassing
``dreamer.LearnedWorldModel``. It goes into the EfficientZero agent as
``make_agent(cfg, spec, model=TinyModel(...))`` and trains with ``agents.loop`` on the
fake corridor env of tests/fakes.py (no gymnasium): the run must finish, checkpoint,
log finite losses, and train *this* model's params, through its own functions.
"""

from __future__ import annotations

import functools
import json
import os
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fakes import make_fake_envs
from helpers import checkpoint_steps, debug_config, eval_steps, read_metrics

from agents.efficientzero import make_agent
from agents.loop import open_run, restore_params
from dreamer import LatentState, LearnedWorldModel, Support, TrainableWorldModel, WorldModel

warnings.filterwarnings("ignore", message="Some donated buffers were not usable")  # some, on a CPU


def dense(key, n_in, n_out):
    return {"w": jax.random.normal(key, (n_in, n_out)) / np.sqrt(n_in), "b": jnp.zeros(n_out)}


def apply(layer, x):
    return x @ layer["w"] + layer["b"]


class TinyModel(LearnedWorldModel):
    """One tanh layer for representation and dynamics, linear heads. Records, at trace
    time, which of its functions the library called."""

    def __init__(self, obs_dim: int, num_actions: int, latent: int = 16):
        self.num_actions, self.observation_shape, self.latent = num_actions, (obs_dim,), latent
        self.value_support = Support(-3.0, 3.0, 13)
        self.reward_support = Support(-1.0, 1.0, 5)
        self.called: set[str] = set()

    def init(self, rng):
        self.called.add("init")
        k = jax.random.split(rng, 7)
        n, a, lat = self.observation_shape[0], self.num_actions, self.latent
        return {"encoder": dense(k[0], n, lat), "transition": dense(k[1], lat + a, lat),
                "reward": dense(k[2], lat, self.reward_support.num_bins),
                "value": dense(k[3], lat, self.value_support.num_bins), "policy": dense(k[4], lat, a),
                "projection": dense(k[5], lat, lat), "predictor": dense(k[6], lat, lat)}

    def represent(self, params, obs):
        self.called.add("represent")
        return LatentState(jnp.tanh(apply(params["encoder"], obs)))

    def predict(self, params, state):
        self.called.add("predict")
        return apply(params["value"], state.latent), apply(params["policy"], state.latent)

    def dynamics(self, params, state, action):
        self.called.add("dynamics")
        x = jnp.concatenate([state.latent, jax.nn.one_hot(action, self.num_actions)], axis=-1)
        latent = jnp.tanh(apply(params["transition"], x))
        return LatentState(latent), apply(params["reward"], latent)

    def project(self, params, state, with_predictor=True):
        self.called.add("project")
        z = apply(params["projection"], state.latent)
        return apply(params["predictor"], z) if with_predictor else z


ENV_STEPS, EVAL_EVERY = 320, 160


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    cfg = debug_config(
        loop={"env_steps": ENV_STEPS, "eval_every": EVAL_EVERY, "log_every_s": 1e-6, "checkpoint_every_s": 1e6},
        env={"id": "corridor"},  # a label here: make_fake_envs builds the env
    )
    probe = make_fake_envs(cfg.env, "train", 0).spec
    model = TinyModel(probe.frame_shape[0], probe.num_actions)
    run_dir = str(tmp_path_factory.mktemp("custom_model") / "run")
    run = open_run(cfg, functools.partial(make_agent, model=model), make_fake_envs, run_dir, progress=False,
                   tensorboard=False)
    params0 = jax.tree_util.tree_map(np.array, run.agent.params(run.state))
    counters = run.run()
    return cfg, model, run, run_dir, params0, counters


def test_model_meets_both_contracts():
    model = TinyModel(4, 3)
    assert isinstance(model, TrainableWorldModel) and isinstance(model, WorldModel)


def test_run_finishes_evaluates_and_checkpoints(trained):
    cfg, _, _, run_dir, _, counters = trained
    assert counters.env_steps == ENV_STEPS and counters.evaluations == 2
    expected = int(cfg.loop.replay_ratio * (ENV_STEPS - cfg.replay.min_size))
    assert expected - cfg.learner.updates_per_call < counters.updates <= expected
    # the final checkpoint; a loaded machine may have written a periodic (wall-clock) one before it
    assert checkpoint_steps(run_dir)[-1] == ENV_STEPS
    summary = json.load(open(os.path.join(run_dir, "summary.json")))
    assert summary["env_steps"] == ENV_STEPS and summary["updates"] == counters.updates
    assert eval_steps(run_dir) == [EVAL_EVERY, ENV_STEPS]
    for r in read_metrics(run_dir):
        if "eval/return_mean" in r:  # corridor games return 1 (goal) or 0 (cut at the cap)
            assert 0.0 <= r["eval/return_mean"] <= 1.0


def test_losses_are_logged_and_finite(trained):
    records = [r for r in read_metrics(trained[3]) if "loss/total" in r]
    assert len(records) >= 10
    for r in records:
        for term in ("total", "value", "reward", "policy", "consistency"):
            assert np.isfinite(r[f"loss/{term}"]), (term, r)
    assert records[-1]["updates"] == trained[5].updates


def test_the_custom_params_were_trained_through_its_own_functions(trained):
    _, model, run, run_dir, params0, _ = trained
    assert model.called == {"init", "represent", "predict", "dynamics", "project"}
    params = run.agent.params(run.state)
    fresh = model.init(jax.random.PRNGKey(0))
    assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(fresh)
    assert set(params) == {"encoder", "transition", "reward", "value", "policy", "projection", "predictor"}
    for (path, before), after in zip(jax.tree_util.tree_leaves_with_path(params0), jax.tree_util.tree_leaves(params)):
        assert np.asarray(after).shape == before.shape
        assert not np.array_equal(np.asarray(after), before), f"{jax.tree_util.keystr(path)} did not change"
    # the checkpoint holds exactly these params
    restored, counters = restore_params(run.agent, run.cfg, run_dir)
    assert counters["env_steps"] == ENV_STEPS
    for a, b in zip(jax.tree_util.tree_leaves(restored), jax.tree_util.tree_leaves(params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_model_that_does_not_fit_the_env_is_refused():
    from agents.efficientzero.agent import check_model
    from agents.envs.base import EnvSpec

    class Half:
        num_actions, observation_shape = 2, (4,)

    with pytest.raises(ValueError, match="missing value_support"):
        check_model(Half(), EnvSpec(2, (4,)))
    model = TinyModel(4, 3)
    check_model(model, EnvSpec(3, (4,)))
    with pytest.raises(ValueError, match="num_actions is 3, the env has 4"):
        check_model(model, EnvSpec(4, (4,)))
    with pytest.raises(ValueError, match="observation_shape"):
        check_model(model, EnvSpec(3, (5,)))
