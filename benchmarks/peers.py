#!/usr/bin/env python3
"""Peer baselines on MinAtar at our budget: DQN, PPO and PQN from rejax, side by side with ours.

    python benchmarks/peers.py Breakout               # dqn ppo pqn, seeds 0 1 2, 100k env steps
    python benchmarks/peers.py all                    # the five games in turn
    python benchmarks/peers.py Breakout --algos dqn --seeds 0 --steps 20000 --results-dir /tmp/res   # a smoke test

Each peer trains on the very envs ours does: gymnax's MinAtar port wrapped in gymnax's
``StickyActionWrapper`` (probability 0.1; ``agents.envs.minatar.make_gymnax``), for the same
env steps, the seeds vmapped in one program (``jax.vmap`` of rejax's ``train``). Every
``EVAL_EVERY`` env steps it is evaluated by our protocol: ``agents.loop.play_games`` on our
evaluation envs (30 envs, one whole game each, seeds as our runs take them), acting greedily
(the argmax of the Q-values, or of PPO's policy logits). The final score is the evaluation at
the end of the budget. ``PEERS`` holds every setting and where it comes from; settings rejax
does not expose are named there too (rejax's DQN and PQN bootstrap through time-limit
truncations as if they were terminal, as gymnax's legacy ``done`` does).

Writes ``benchmarks/results/peers_<Game>.json`` (per algo and seed: the final evaluation, the
learning curve, seconds) with the machine and commit; ``benchmarks/minatar.py --table`` puts
the peers beside ours. Needs the ``bench`` extra (rejax).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from agents.envs.minatar import GAMES
from benchmarks.harness import RESULTS, Parser, machine, write_result

PROG = "peers.py"
BUDGET = 100_000
EVAL_EVERY = 10_000
EVAL_GAMES = 30
DEFAULT_SEEDS = (0, 1, 2)
PPO_HIDDEN = (256, 256)  # PPO's actor and critic MLPs, as wide as our model's (rejax's default is 64 x 64)
Q_HIDDEN = (128,)  # DQN's and PQN's layer after their convolution (the MinAtar paper's network)

# Settings per algorithm: rejax field -> value, with the reason or source. Every algorithm
# sees the same env, budget and evaluation; these are each one's own training settings.
PEERS: dict[str, dict] = {
    "dqn": {
        "source": "the MinAtar paper's DQN (Young & Tian 2019, Table 3): batch 32, replay 100k, target network "
                  "every 1,000 steps, epsilon 1 -> 0.1 over the first 100k frames, learning starts at 5,000 frames, "
                  "one update per env step, gamma 0.99, lr 2.5e-4 (Adam here: rejax has no centred RMSProp); its "
                  "network: a 3x3 convolution with 16 channels (stride 1, no padding), ReLU, a 128-unit ReLU layer; "
                  "plain (not double) DQN",
        "config": {"num_envs": 1, "buffer_size": 100_000, "fill_buffer": 5_000, "batch_size": 32,
                   "learning_rate": 2.5e-4, "max_grad_norm": 10.0, "target_update_freq": 1_000, "polyak": 0.0,
                   "eps_start": 1.0, "eps_end": 0.1, "exploration_fraction": 1.0, "gamma": 0.99, "ddqn": False,
                   "num_epochs": 1},
    },
    "ppo": {
        "source": "rejax's tuned MinAtar-Breakout PPO (its benchmark/breakout_1m.yaml): 32 envs x 32 steps, "
                  "4 epochs of 4 minibatches, lr 2.57e-4, grad norm 1, gamma 0.995, GAE 0.95, clip 0.2, "
                  "entropy 0.01, value 0.5, tanh; MLP 256-256",
        "config": {"num_envs": 32, "num_steps": 32, "num_epochs": 4, "num_minibatches": 4,
                   "learning_rate": 0.00025674088686342003, "max_grad_norm": 1.0, "gamma": 0.995, "gae_lambda": 0.95,
                   "clip_eps": 0.2, "ent_coef": 0.01, "vf_coef": 0.5,
                   "agent_kwargs": {"activation": "tanh", "hidden_layer_sizes": PPO_HIDDEN}},
    },
    "pqn": {
        "source": "rejax's PQN settings for gymnax control tasks (its configs/gymnax/acrobot.yaml): 16 envs x 128 "
                  "steps, 16 minibatches, 5 epochs, lr 3e-4, grad norm 10, epsilon 1 -> 0.05 over half the budget, "
                  "gamma 0.99, lambda 0.9; the DQN peer's network (MinAtar's convolution, then 128 units) with "
                  "LayerNorm before each ReLU, as PQN normalises its layers",
        "config": {"num_envs": 16, "num_steps": 128, "num_minibatches": 16, "num_epochs": 5, "learning_rate": 3e-4,
                   "max_grad_norm": 10.0, "eps_start": 1.0, "eps_end": 0.05, "exploration_fraction": 0.5,
                   "gamma": 0.99, "td_lambda": 0.9},
    },
}


def result_path(results_dir, game: str) -> Path:
    return Path(results_dir) / f"peers_{game}.json"


def _rejax():
    try:
        import rejax
    except ImportError:
        raise SystemExit(f'{PROG}: error: the peer baselines need rejax: pip install -e ".[bench]"') from None
    return rejax


def conv_q_network():
    """MinAtar's DQN network as a rejax Q-network: one 3x3 convolution (16 channels, stride 1,
    no padding) and its activation before rejax's MLP and linear Q head (rejax 0.1.3 has only MLPs)."""
    import jax.numpy as jnp
    from flax import linen as nn
    from rejax.networks import DiscreteQNetwork

    class ConvQNetwork(DiscreteQNetwork):
        @nn.compact
        def __call__(self, obs):
            return super().__call__(self.activation(nn.Conv(16, (3, 3), padding="VALID")(obs.astype(jnp.float32))))

    return ConvQNetwork


def greedy_action(name: str, algo, ts, obs):
    """The peer's greedy action for a batch of frames: argmax of the Q-values (DQN, PQN) or
    of the policy logits (PPO)."""
    import jax.numpy as jnp

    obs = obs.astype(jnp.float32)
    if name == "ppo":
        return algo.actor.apply(ts.actor_ts.params, obs, method="_action_dist").logits.argmax(-1)
    return algo.agent.apply(ts.q_ts.params, obs).argmax(-1)


def build(name: str, game: str, steps: int):
    """The rejax algorithm ``name`` on ``game`` with our env and our evaluation as its callback."""
    import jax
    from flax import linen as nn
    from gymnax.wrappers import LegacyStepAPIWrapper

    from agents.envs.minatar import MinAtarFunctional, make_gymnax
    from agents.loop import EVAL_SEED_OFFSET, play_games

    rejax = _rejax()
    env, params = make_gymnax(game)
    cls = {"dqn": rejax.DQN, "ppo": rejax.PPO, "pqn": rejax.PQN}[name]
    eval_env = MinAtarFunctional(game, EVAL_GAMES)

    def evaluation(algo, ts, rng, seed):
        greedy = lambda ts_, key, obs: SimpleNamespace(action=greedy_action(name, algo, ts_, obs))  # noqa: E731
        index = ts.global_step // EVAL_EVERY - 1  # our runs' k-th evaluation (from 0) plays seed + offset + k
        returns, _, _ = play_games(greedy, eval_env, 1, ts, rng, seed + EVAL_SEED_OFFSET + index)
        return returns[:, 0]

    class Shared(LegacyStepAPIWrapper):
        """The env, shared and not copied when rejax deep-copies its config: gymnax wrappers
        forward unknown attributes to their inner env, so a copy recurses before it has one."""

        def __deepcopy__(self, memo):
            return self

    algo = cls.create(env=Shared(env), env_params=params, total_timesteps=steps, eval_freq=EVAL_EVERY,
                      skip_initial_evaluation=True, **PEERS[name]["config"])
    if name in ("dqn", "pqn"):  # rejax fixes their network at an MLP of 64 x 64: MinAtar's instead
        from rejax.networks import EpsilonGreedyPolicy

        act = (lambda x: nn.relu(nn.LayerNorm()(x))) if name == "pqn" else nn.relu
        algo = algo.replace(agent=EpsilonGreedyPolicy(conv_q_network())(
            hidden_layer_sizes=Q_HIDDEN, action_dim=int(env.action_space(params).n), activation=act))

    def train(seed):
        """One seed's whole training; its evaluations know the seed (a tracer under vmap)."""
        run = algo.replace(eval_callback=lambda a, ts, rng: evaluation(a, ts, rng, seed))
        return run.train(jax.random.PRNGKey(seed))

    return jax.vmap(train)


def run_game(game: str, algos, seeds, steps: int) -> dict:
    import jax
    import jax.numpy as jnp

    out = {}
    for name in algos:
        train = build(name, game, steps)
        t0 = time.time()
        _, curves = jax.jit(train)(jnp.asarray(seeds, jnp.int32))  # curves [S, evals, games]
        curves = np.asarray(jax.device_get(curves))
        seconds = time.time() - t0
        per_seed = []
        for s, curve in zip(seeds, curves):
            final = curve[-1]
            per_seed.append({"seed": int(s), "final_eval": {"mean": float(final.mean()), "std": float(final.std()),
                                                            "episodes": int(final.size)},
                             "curve": [[int((k + 1) * EVAL_EVERY), float(c.mean())] for k, c in enumerate(curve)]})
        finals = [p["final_eval"]["mean"] for p in per_seed]
        out[name] = {"source": PEERS[name]["source"], "config": PEERS[name]["config"],
                     "hidden": list(PPO_HIDDEN if name == "ppo" else Q_HIDDEN),
                     "seeds": per_seed, "mean": float(np.mean(finals)), "seconds_all_seeds": seconds}
        print(f"{game} {name}: final {' / '.join(f'{f:.2f}' for f in finals)} (mean {np.mean(finals):.2f}), "
              f"{seconds:.0f} s for {len(seeds)} seeds", flush=True)
    return out


def main(argv=None) -> int:
    parser = Parser(prog=PROG, description=__doc__.split("\n")[0])
    parser.add_argument("game", help=f"a MinAtar game ({', '.join(GAMES)}) or all")
    parser.add_argument("--algos", nargs="+", default=list(PEERS), choices=list(PEERS))
    parser.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULT_SEEDS))
    parser.add_argument("--steps", type=int, default=BUDGET)
    parser.add_argument("--results-dir", default=None)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    from agents.envs.base import EnvError
    from agents.envs.minatar import game_name

    try:
        games = list(GAMES) if args.game.lower() == "all" else [game_name(args.game)]
    except EnvError:
        parser.error(f"unknown game {args.game!r}: choose one of {', '.join(GAMES)} or all")
    if args.steps < EVAL_EVERY or args.steps % EVAL_EVERY:
        parser.error(f"--steps must be a positive multiple of {EVAL_EVERY:,}, got {args.steps}")
    if len(set(args.seeds)) != len(args.seeds) or min(args.seeds) < 0:
        parser.error(f"--seeds: expected distinct seeds >= 0, got {args.seeds}")
    results_dir = Path(args.results_dir or RESULTS)
    for game in games:
        parser.writable(result_path(results_dir, game))
    _rejax()
    for game in games:
        record = {"game": game, "env_steps": args.steps, "eval_every": EVAL_EVERY, "eval_games": EVAL_GAMES,
                  "sticky_action_prob": 0.1, "peers": run_game(game, args.algos, args.seeds, args.steps),
                  "machine": machine()}
        rows = [[name, " / ".join(f"{p['final_eval']['mean']:.2f}" for p in r["seeds"]), f"{r['mean']:.2f}",
                 f"{r['seconds_all_seeds']:.0f}"] for name, r in record["peers"].items()]
        write_result(result_path(results_dir, game), record,
                     (["peer", "final return per seed", "mean", "seconds (all seeds)"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
