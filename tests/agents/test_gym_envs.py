"""gymnasium envs behind the env contract: one-line errors for what cannot be built."""

from __future__ import annotations

import gymnasium as gym
import pytest

from agents.envs.base import EnvError
from agents.envs.gym import GymEnvs, describe_spaces


def test_missing_optional_dependency_names_the_extra(monkeypatch):
    """gymnasium's DependencyNotInstalled (a multi-line traceback through train.py) becomes one
    line naming the extra that installs it; simulated, so the test holds with Box2D installed."""

    def missing(env_id, **kwargs):
        raise gym.error.DependencyNotInstalled(
            'Box2D is not installed, you can install it by run `pip install swig` followed by '
            '`pip install "gymnasium[box2d]"`')

    monkeypatch.setattr(gym, "make", missing)
    with pytest.raises(EnvError) as info:
        describe_spaces("LunarLander-v3")
    message = str(info.value)
    assert message == 'LunarLander-v3 needs a package that is not installed: pip install -e ".[box2d]"'
    assert "\n" not in message


def test_cartpole_v0_builds_without_a_warning(recwarn):
    envs = GymEnvs("CartPole-v0", 2, seed=0)
    envs.reset()
    envs.close()
    assert not [w for w in recwarn if "CartPole" in str(w.message)]


def test_unknown_and_unsupported_ids():
    with pytest.raises(EnvError, match="did you mean CartPole-v1"):
        describe_spaces("CartPol-v1")
    with pytest.raises(EnvError, match="Discrete"):
        describe_spaces("Pendulum-v1")
