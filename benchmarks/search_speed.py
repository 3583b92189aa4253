"""Search speed of :func:`dreamer.plan`: searches/s and simulations/s.

pUCT with 50 simulations (EfficientZero) and Gumbel with 16 (EfficientZero V2) on two
:class:`dreamer.networks.EfficientZeroModel` with fresh parameters (:data:`MODELS`) at batch
sizes 1 to 1536; compile time apart from the steady state; then the depth and time of pUCT's
trees under noisy values for several ``max_depth`` (:func:`deep_chain`). Setup, results and
why: ``benchmarks/README.md``.

    python benchmarks/search_speed.py            # default: ~5 minutes on a 2-core CPU
    python benchmarks/search_speed.py --quick    # ~2 minutes on a 2-core CPU
    python benchmarks/search_speed.py --full     # everything, however slow (for a GPU)

Without ``--full`` a batch size predicted slower than ``--max-call-s`` per call is skipped.
Writes ``benchmarks/results/search_speed_<backend>.json`` and prints a table.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.harness import RESULTS, Parser, compile_timed, machine, randomize_heads, time_calls, write_result
from dreamer import PlannerConfig, plan
from dreamer.config import NetworkConfig
from dreamer.networks import EfficientZeroModel

SEARCHES = {"puct": 50, "gumbel": 16}  # simulations: EfficientZero / EfficientZero V2
BATCHES = (1, 8, 64, 256, 1536)
MAX_CALL_S = 30.0  # without --full, skip a batch whose time per call, extrapolated from the last one, exceeds this


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    name: str
    network: NetworkConfig
    observation_shape: tuple[int, ...]
    observation_dtype: str
    num_actions: int


MODELS = {
    "mlp": ModelSpec("mlp", NetworkConfig(), (4,), "float32", 2),
    "conv": ModelSpec("conv", NetworkConfig(kind="conv", channels=64, reduced_channels=16, lstm_hidden=512,
                                            value_support=(-300.0, 300.0, 601), reward_support=(-300.0, 300.0, 601)),
                      (96, 96, 12), "uint8", 18),
}


def build(spec: ModelSpec, seed: int = 0):
    model = EfficientZeroModel(spec.network, spec.observation_shape, spec.num_actions, jnp.dtype(spec.observation_dtype))
    return model, jax.jit(model.init)(jax.random.PRNGKey(seed))


def observations(spec: ModelSpec, batch: int, seed: int = 0) -> jnp.ndarray:
    rng = np.random.default_rng(seed)
    shape = (batch, *spec.observation_shape)
    if spec.observation_dtype == "uint8":
        return jnp.asarray(rng.integers(0, 256, shape, dtype=np.uint8))
    return jnp.asarray(rng.normal(size=shape).astype(spec.observation_dtype))


def tree_depths(parents: np.ndarray) -> np.ndarray:
    """Deepest node of each tree in a batch, from ``tree.parents [B, N]`` (a node is
    always expanded after its parent, so one pass in index order suffices)."""
    depth = np.zeros(parents.shape, np.int64)
    rows = np.arange(parents.shape[0])
    for i in range(1, parents.shape[1]):
        p = parents[:, i]
        depth[:, i] = np.where(p >= 0, depth[rows, np.maximum(p, 0)] + 1, 0)
    return depth.max(axis=1)


def search_fn(model, config: PlannerConfig):
    """What acting needs from a search (action, policy, value) plus the tree's parents."""

    def fn(params, rng, obs):
        out = plan(params, rng, obs, model=model, config=config)
        return out.action, out.action_weights, out.root_value, out.tree.parents

    return jax.jit(fn)


def measure(compiled, params, obs, *, min_reps: int, max_reps: int, target_s: float, seed: int = 0) -> dict:
    """Times a compiled search (:func:`benchmarks.harness.time_calls`, one warm-up call),
    a fresh key per call, and reports the depth of the last call's trees."""
    key, count, last = jax.random.PRNGKey(seed), itertools.count(), {}

    def call():
        last["out"] = compiled(params, jax.random.fold_in(key, next(count)), obs)
        return last["out"]

    stats = time_calls(call, min_reps=min_reps, max_reps=max_reps, target_s=target_s, warmup=True)
    depth = tree_depths(np.asarray(last["out"][3]))
    return {**stats, "tree_depth_max": int(depth.max()), "tree_depth_mean": float(depth.mean())}


def throughput(models, batches, *, max_call_s: float | None, reps: tuple[int, int, float], log) -> tuple[list, list]:
    rows, skipped = [], []
    for name in models:
        spec = MODELS[name]
        model, params = build(spec)
        for search, sims in SEARCHES.items():
            config = PlannerConfig(search=search, num_simulations=sims)
            jitted = search_fn(model, config)
            last = None
            for batch in sorted(batches):
                predicted = last["median_s"] * batch / last["batch"] if last else 0.0
                if max_call_s is not None and predicted > max_call_s:
                    reason = f"predicted {predicted:.3g} s per call (linear in batch from batch {last['batch']}) > {max_call_s:.3g} s; use --full"
                    skipped.append({"model": name, "search": search, "batch": batch, "reason": reason})
                    log(f"{name:5} {search:6} {sims:4d} {batch:6d}  skipped: {reason}")
                    continue
                obs = observations(spec, batch)
                compiled, compile_s = compile_timed(jitted, params, jax.random.PRNGKey(0), obs)
                stats = measure(compiled, params, obs, min_reps=reps[0], max_reps=reps[1], target_s=reps[2])
                last = {"model": name, "search": search, "simulations": sims, "batch": batch, "compile_s": compile_s,
                        **stats, "searches_per_s": batch / stats["median_s"],
                        "simulations_per_s": batch * sims / stats["median_s"]}
                rows.append(last)
                log(format_row(last))
    return rows, skipped


DEEP_PARAMS = (("fresh init (zero heads)", 0.0), ("random heads x1", 1.0), ("random heads x10", 10.0))


def deep_chain(model_name: str, batch: int, sims_list, depths, *, reps: tuple[int, int, float], log) -> list:
    spec = MODELS[model_name]
    model, fresh = build(spec)
    param_sets = [(label, fresh if scale == 0 else randomize_heads(fresh, jax.random.PRNGKey(1), scale)) for label, scale in DEEP_PARAMS]
    obs = observations(spec, batch)
    rows = []
    cases = [("puct", s, d) for s in sims_list for d in depths] + [("gumbel", s, None) for s in sims_list]
    for search, sims, max_depth in cases:
        config = PlannerConfig(search=search, num_simulations=sims, max_depth=max_depth)
        compiled, compile_s = compile_timed(search_fn(model, config), fresh, jax.random.PRNGKey(0), obs)
        for label, params in param_sets:  # same shapes: one compile serves all three
            value_std = float(jnp.std(model.initial_inference(params, obs).value))
            stats = measure(compiled, params, obs, min_reps=reps[0], max_reps=reps[1], target_s=reps[2])
            rows.append({"model": model_name, "batch": batch, "params": label, "root_value_std": value_std,
                         "search": search, "simulations": sims, "max_depth": max_depth, "compile_s": compile_s,
                         **stats, "ms_per_search_call": 1e3 * stats["median_s"]})
            log(f"  {label:24} {search:6} sims {sims:4d} max_depth {str(max_depth):>4}: depth max "
                f"{stats['tree_depth_max']:4d} mean {stats['tree_depth_mean']:6.1f}  {1e3 * stats['median_s']:8.1f} ms/call")
    return rows


HEADER = (f"{'model':5} {'search':6} {'sims':>4} {'batch':>6} {'compile s':>9} {'ms / call':>12} {'searches/s':>11} "
          f"{'sims/s':>12} {'depth':>6} {'reps':>5}")


def format_row(r: dict) -> str:
    return (f"{r['model']:5} {r['search']:6} {r['simulations']:4d} {r['batch']:6d} {r['compile_s']:9.1f} "
            f"{1e3 * r['median_s']:12.2f} {r['searches_per_s']:11.1f} {r['simulations_per_s']:12.0f} "
            f"{r['tree_depth_max']:6d} {r['reps']:5d}")


def main(argv=None):
    parser = Parser(prog="search_speed.py", description="Search speed of dreamer.plan (pUCT and Gumbel).")
    parser.add_argument("--quick", action="store_true", help="fewer batch sizes and repetitions (~2 min on a 2-core CPU)")
    parser.add_argument("--full", action="store_true", help="every batch size for every model, however slow (for a GPU)")
    parser.add_argument("--max-call-s", type=float, default=MAX_CALL_S, help="without --full, skip batches predicted slower than this per call")
    parser.add_argument("--batches", type=lambda s: tuple(int(x) for x in s.split(",")), default=None, help="e.g. 1,8,64")
    parser.add_argument("--models", type=lambda s: tuple(s.split(",")), default=None, help="mlp,conv")
    parser.add_argument("--no-deep-chain", action="store_true", help="skip the deep-chain / max_depth section")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default benchmarks/results/search_speed_<backend>.json)")
    args = parser.parse_args(argv)

    models = args.models or tuple(MODELS)
    for m in models:
        if m not in MODELS:
            parser.error(f"unknown model {m!r}; expected some of {tuple(MODELS)}")
    batches = args.batches or ((1, 8, 64) if args.quick else BATCHES)
    reps = (2, 3, 0.5) if args.quick else (3, 10, 2.0)  # (min reps, max reps, target seconds)
    deep_batch = {"mlp": 16} if args.quick else {"mlp": 64, "conv": 16}  # the deep-chain models and their batches
    deep = {"batch": deep_batch, "sims": (50, 200), "depths": (None, 10, 5)}
    out_path = parser.writable(args.out or RESULTS / f"search_speed_{jax.default_backend()}.json")

    started, info = time.perf_counter(), machine()
    print(f"jax {info['jax']} on {info['devices']}, {info['cpu_count']} CPUs, mctx {info['mctx']}")
    print("\n== throughput (fresh parameters; ms / call = median wall time of one batched search) ==")
    print(HEADER)
    rows, skipped = throughput(models, batches, max_call_s=None if args.full else args.max_call_s, reps=reps, log=print)

    deep_rows = []
    if not args.no_deep_chain:
        for m in deep_batch:
            print(f"\n== deep chains: pUCT max_depth, {m} model, batch {deep['batch'][m]} ==")
            deep_rows += deep_chain(m, deep["batch"][m], deep["sims"], deep["depths"], reps=reps, log=print)

    settings = {
        "mode": "quick" if args.quick else ("full" if args.full else "default"), "searches": SEARCHES,
        "batches": list(batches), "models": {m: dataclasses.asdict(MODELS[m]) for m in models},
        "reps": {"min": reps[0], "max": reps[1], "target_s": reps[2]}, "deep_chain": deep,
        "timing": "compile_s = jit(...).lower(...).compile(); then one warm-up call; median_s over reps calls, each "
                  "block_until_ready",
        "planner_defaults": dataclasses.asdict(PlannerConfig()), "max_call_s": None if args.full else args.max_call_s,
    }
    print()
    write_result(out_path, {"benchmark": "search_speed", "machine": info, "settings": settings, "throughput": rows,
                            "skipped": skipped, "deep_chain": deep_rows, "total_s": time.perf_counter() - started})


if __name__ == "__main__":
    main()
