"""Atari-100k protocol tests for agents.envs (ale-py vector envs + our wrapper)."""

import csv
import dataclasses

import numpy as np
import pytest
from helpers import ROOT

pytest.importorskip("ale_py")

from agents.envs.atari import (  # noqa: E402
    ATARI100K,
    ATARI100K_GAMES,
    AtariProtocol,
    ale_game_id,
    make_eval_envs,
    make_train_envs,
)

GRAY64 = AtariProtocol.gray64()  # cheaper frames where the frame format is irrelevant


def _reference_rows():
    for path in (ROOT / "benchmarks" / "atari100k" / "reference_scores.csv",
                 ROOT.parent / "shared" / "reference" / "atari100k_scores.csv"):
        if path.exists():
            with open(path, newline="") as f:
                return list(csv.DictReader(f))
    pytest.skip("reference csv not found")


def test_protocol_values():
    p = ATARI100K
    assert (p.frame_skip, p.max_pool, p.frame_stack) == (4, True, 4)
    assert p.repeat_action_probability == 0.0
    assert p.noop_max == 30
    assert not p.full_action_space
    assert p.train_episodic_life and p.train_clip_rewards
    assert p.train_max_episode_steps == 3_000
    assert p.eval_max_episode_steps == 27_000 == 108_000 // p.frame_skip
    assert p.frame_shape == (96, 96, 3) and p.observation_shape == (96, 96, 12)
    assert GRAY64.frame_shape == (64, 64, 1) and GRAY64.observation_shape == (64, 64, 4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.frame_skip = 2  # type: ignore[misc]


def test_game_ids():
    assert ale_game_id("Breakout") == "breakout"
    assert ale_game_id("MsPacman") == "ms_pacman"
    assert ale_game_id("ms_pacman") == "ms_pacman"
    assert ale_game_id("ALE/Breakout-v5") == "breakout"
    assert ale_game_id("BreakoutNoFrameskip-v4") == "breakout"
    assert ale_game_id("UpNDown") == "up_n_down"
    assert ale_game_id("KungFuMaster") == "kung_fu_master"
    with pytest.raises(ValueError, match="Breakout"):
        ale_game_id("Breakot")
    with pytest.raises(ValueError, match="ms_pacman|MsPacman"):
        ale_game_id("MsPacmn")


def test_minimal_action_set_all_26_games():
    rows = _reference_rows()
    assert sorted(r["game"] for r in rows) == sorted(ATARI100K_GAMES)
    wrong = {}
    for r in rows:
        envs = make_train_envs(r["game"], 1, protocol=GRAY64)
        if envs.num_actions != int(r["actions"]):
            wrong[r["game"]] = (envs.num_actions, int(r["actions"]))
        envs.close()
    assert not wrong, f"(ours, csv): {wrong}"


@pytest.mark.parametrize("protocol", [ATARI100K, GRAY64], ids=["rgb96", "gray64"])
def test_shapes_and_frame_stack(protocol):
    envs = make_train_envs("Pong", 2, protocol=protocol)
    h, w, c = protocol.frame_shape
    assert envs.frame_shape == (h, w, c) and envs.frame_stack == 4
    assert envs.observation_shape == (h, w, 4 * c)
    frames = envs.reset(seed=0)
    assert frames.shape == (2, h, w, c) and frames.dtype == np.uint8
    stacked = envs.observation()
    assert stacked.shape == (2, h, w, 4 * c) and stacked.dtype == np.uint8
    for k in range(4):  # a new episode's stack is its first frame, 4 times
        np.testing.assert_array_equal(stacked[..., k * c:(k + 1) * c], frames)
    history = [frames]
    for _ in range(5):
        frames, rewards, term, trunc, info = envs.step(np.zeros(2, np.int64))
        history.append(frames)
        assert rewards.dtype == np.float32 and term.dtype == bool and trunc.dtype == bool
    stacked = envs.observation()
    for k in range(4):  # oldest first, newest last
        np.testing.assert_array_equal(stacked[..., k * c:(k + 1) * c], history[-4 + k])
    envs.close()


def test_frame_skip_is_4_frames_per_agent_step():
    envs = make_eval_envs("Pong", 2, protocol=GRAY64)
    envs.reset(seed=0)
    before = envs.ale_info["episode_frame_number"].copy()
    for t in range(1, 21):
        _, _, _, _, info = envs.step(np.zeros(2, np.int64))
        np.testing.assert_array_equal(info["episode_frame_number"], before + 4 * t)
    envs.close()


def test_noop_starts_up_to_30():
    envs = make_eval_envs("Pong", 16, protocol=GRAY64)  # ~0.15 s per env: make + reset
    envs.reset(seed=0)
    noop_frames = envs.ale_info["episode_frame_number"]  # no fire reset: frames = no-ops
    assert noop_frames.min() >= 0 and noop_frames.max() <= 30
    assert len(np.unique(noop_frames)) >= 6  # env i seeded with seed + i: random starts
    envs.close()
    no_noops = make_eval_envs("Pong", 4, protocol=dataclasses.replace(GRAY64, noop_max=0))
    no_noops.reset(seed=0)
    assert (no_noops.ale_info["episode_frame_number"] == 0).all()
    no_noops.close()


def _rollout(protocol, seed, actions, game="Breakout"):
    envs = make_train_envs(game, 1, protocol=protocol)
    out = [envs.reset(seed=seed)]
    for a in actions:
        out.append(envs.step(np.array([a]))[0])
    envs.close()
    return np.stack(out)


def test_no_sticky_actions_deterministic_replay():
    actions = np.random.default_rng(1).integers(0, 4, size=250)
    # Same seed, same actions: identical frames (through a game over and autoreset).
    a = _rollout(GRAY64, 7, actions)
    b = _rollout(GRAY64, 7, actions)
    np.testing.assert_array_equal(a, b)
    # Without no-ops the start state is fixed, so with repeat_action_probability 0
    # the seed must not matter at all; with sticky actions it would.
    fixed = dataclasses.replace(GRAY64, noop_max=0)
    np.testing.assert_array_equal(_rollout(fixed, 0, actions[:120]),
                                  _rollout(fixed, 12345, actions[:120]))
    sticky = dataclasses.replace(fixed, repeat_action_probability=0.25)
    assert not np.array_equal(_rollout(sticky, 0, actions[:120]),
                              _rollout(sticky, 12345, actions[:120]))


def test_life_loss_terminal_in_training_only():
    train = make_train_envs("Breakout", 1, protocol=GRAY64)
    evals = make_eval_envs("Breakout", 1, protocol=GRAY64)
    train.reset(seed=3)
    evals.reset(seed=3)
    rng = np.random.default_rng(0)
    for _ in range(500):
        a = rng.integers(0, 4, size=1)
        ft, _, term_t, trunc_t, info_t = train.step(a)
        fe, _, term_e, trunc_e, info_e = evals.step(a)
        np.testing.assert_array_equal(ft, fe)  # same game underneath
        if info_e["life_loss"][0]:
            break
    else:
        pytest.fail("no life lost in 500 random Breakout steps")
    assert info_t["life_loss"][0] and not info_t["game_over"][0]
    assert term_t[0] and not trunc_t[0]  # training: end of episode
    assert not term_e[0] and not trunc_e[0]  # evaluation: the game goes on
    assert info_e["lives"][0] == info_t["lives"][0] == 4
    assert not info_t["game_end"][0] and info_t["episode_returns"] == []
    # the training game was not reset: frame counter keeps running
    frame_no = info_t["episode_frame_number"][0]
    _, _, _, _, info_t = train.step(np.array([0]))
    assert info_t["episode_frame_number"][0] == frame_no + 4 and info_t["lives"][0] == 4
    # the training acting stack restarted at the life loss, the evaluation one did not
    st = train.observation()[0]
    assert (st[..., 0] == st[..., 1]).all() and (st[..., 1] == st[..., 2]).all()
    train.close()
    evals.close()


def test_game_over_same_step_autoreset_and_returns():
    train = make_train_envs("Breakout", 1, protocol=GRAY64)
    evals = make_eval_envs("Breakout", 1, protocol=GRAY64)
    train.reset(seed=5)
    evals.reset(seed=5)
    rng = np.random.default_rng(2)
    raw_sum, steps = 0.0, 0
    for _ in range(2000):
        a = rng.integers(0, 4, size=1)
        ft, rt, term_t, _, info_t = train.step(a)
        fe, re_, term_e, trunc_e, info_e = evals.step(a)
        raw_sum += float(info_e["raw_reward"][0])
        steps += 1
        if info_e["game_over"][0]:
            break
    else:
        pytest.fail("no game over in 2000 random Breakout steps")
    assert term_e[0] and term_t[0] and not trunc_e[0]
    assert info_t["game_over"][0] and info_e["game_end"][0]
    assert info_e["episode_returns"] == pytest.approx([raw_sum])
    assert info_t["episode_returns"] == pytest.approx([raw_sum])  # train logs whole games
    assert info_e["episode_lengths"] == [steps]
    # the returned frame already belongs to the next game
    assert info_e["lives"][0] == 5 and info_e["episode_frame_number"][0] <= 30
    assert info_e["game_steps"][0] == 0
    assert not np.array_equal(fe, info_e["final_frames"])
    st = evals.observation()[0]
    assert (st[..., 0] == fe[0, ..., 0]).all() and (st[..., 3] == fe[0, ..., 0]).all()
    train.close()
    evals.close()


def test_reward_clipping_in_training_only():
    train = make_train_envs("MsPacman", 1, protocol=GRAY64)
    evals = make_eval_envs("MsPacman", 1, protocol=GRAY64)
    train.reset(seed=0)
    evals.reset(seed=0)
    rng = np.random.default_rng(0)
    big = False
    for _ in range(150):
        a = rng.integers(0, train.num_actions, size=1)
        _, rt, _, _, it = train.step(a)
        _, re_, _, _, ie = evals.step(a)
        np.testing.assert_array_equal(rt, np.sign(it["raw_reward"]))
        np.testing.assert_array_equal(re_, ie["raw_reward"])
        np.testing.assert_array_equal(it["raw_reward"], ie["raw_reward"])
        big |= bool(ie["raw_reward"][0] > 1)
    assert big, "MsPacman gave no reward > 1 in 150 steps"
    train.close()
    evals.close()


def test_episode_caps():
    assert make_eval_envs("Pong", 1, protocol=GRAY64).max_episode_steps == 27_000
    assert make_train_envs("Pong", 1, protocol=GRAY64).max_episode_steps == 3_000
    cap = 40
    envs = make_train_envs("Pong", 2, protocol=dataclasses.replace(GRAY64, train_max_episode_steps=cap))
    envs.reset(seed=0)
    for t in range(1, cap + 1):
        frames, _, term, trunc, info = envs.step(np.zeros(2, np.int64))
        if t < cap:
            assert not trunc.any() and not term.any()
    assert trunc.all() and not term.any()
    assert info["game_end"].all() and info["episode_lengths"] == [cap, cap]
    assert (info["episode_frame_number"] <= 30).all()  # the capped games were reset
    assert not np.array_equal(frames, info["final_frames"])
    _, _, _, trunc, info = envs.step(np.zeros(2, np.int64))
    assert not trunc.any() and (info["game_steps"] == 1).all()
    envs.close()


def test_make_envs_from_config_and_constructor_seed():
    from types import SimpleNamespace

    from agents.envs import make

    cfg = SimpleNamespace(id="ALE/Pong-v5", num_envs=2, num_eval_envs=3, frame_size=64,
                          grayscale=True, max_episode_steps=None, eval_max_episode_steps=500)
    train = make(cfg, "train", seed=11)
    evals = make(cfg, "eval", seed=11)
    assert train.spec.observation_shape == (64, 64, 4) and train.spec.frame_stack == 4
    assert (train.num_envs, evals.num_envs) == (2, 3)
    assert train.frame_shape == (64, 64, 1) and train.frame_dtype == np.uint8
    assert (train.max_episode_steps, evals.max_episode_steps) == (3_000, 500)
    assert train.episodic_life and train.clip_rewards
    assert not evals.episodic_life and not evals.clip_rewards
    # reset() without a seed uses the constructor's seed: reproducible
    np.testing.assert_array_equal(train.reset(), make(cfg, "train", seed=11).reset())
    # env i is seeded with seed + i in both kinds: the same seed gives evaluation the
    # same starts as training, so the loop should seed evaluation envs apart
    evals.reset()
    np.testing.assert_array_equal(train.ale_info["episode_frame_number"],
                                  evals.ale_info["episode_frame_number"][:2])
    train.close()
    evals.close()
