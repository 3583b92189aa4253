#!/usr/bin/env python3
"""Memory soak: resident memory of a training run that goes well past replay capacity.

Runs ``scripts/train.py`` once per preset in a fresh process, the replay capacity shrunk
(:data:`SOAKS`), samples the RSS of the process and its descendants every ``--interval``
seconds, and compares windowed peaks after the buffer filled and at the end of the loop
(:func:`analyse`). The definitions and why: ``benchmarks/README.md``, "Memory soak".

    python benchmarks/memory_soak.py                          # both presets: ~6 min on an idle 2-core CPU, ~16 loaded
    python benchmarks/memory_soak.py --presets cartpole --scale 3

Writes ``benchmarks/results/memory_soak_<tag>.json`` and ``memory_soak_<preset>.png``.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import psutil

from benchmarks.harness import RESULTS, ROOT, Parser, write_result

GROWTH_LIMIT_PCT = 5.0

# Per preset: shrunk capacity (transitions over all envs), run length (env steps), the
# preset's num_envs (to compute when the buffer is full), and clocks. min_size and
# batch_size are the presets' own (cartpole 256/128, atari-debug 128/16); both fit the
# shrunk capacities (config.py: batch <= min_size <= capacity, capacity / num_envs > window).
SOAKS = {
    "cartpole": {
        "num_envs": 8,
        "capacity": 2_000,  # 250 steps per env; window 5 + 5 + 1 = 11
        "steps": 10_000,  # 5x capacity: ~2.5 min at ~70 env steps/s (idle CPU), ~5 min when loaded
        "eval_every": 1_000,
        "checkpoint_every_s": 30,
    },
    "atari-debug": {
        "num_envs": 4,
        "capacity": 400,  # 100 steps per env; window 5 + 5 + 4 = 14
        "steps": 4_000,  # 10x capacity: ~3.5 min at ~20 env steps/s (idle CPU), ~11 min at ~6 (loaded)
        "eval_every": 400,
        "checkpoint_every_s": 30,
    },
}


def _memory(proc: psutil.Process) -> dict | None:
    """RSS (kB) of the process and of its descendants, how many descendants, and the process's
    threads; None once it has exited (a zombie's RSS reads 0)."""
    try:
        main, threads, kids = proc.memory_info().rss // 1024, proc.num_threads(), proc.children(recursive=True)
    except psutil.Error:
        return None
    kid_rss = 0
    for kid in kids:
        with contextlib.suppress(psutil.Error):  # a descendant that ended since
            kid_rss += kid.memory_info().rss // 1024
    if not main:
        return None
    return {"rss_kb": main + kid_rss, "rss_main_kb": main, "rss_children_kb": kid_rss, "children": len(kids),
            "threads": threads}


def _read_progress(path: str, state: dict) -> None:
    """Reads the whole records appended to metrics.jsonl since the last call into ``state``: the
    env steps of the last one and of every evaluation."""
    try:
        with open(path, "rb") as f:
            f.seek(state["offset"])
            chunk = f.read()
    except FileNotFoundError:
        return
    complete = chunk[: chunk.rfind(b"\n") + 1]
    state["offset"] += len(complete)
    for record in map(json.loads, complete.splitlines()):
        state["env_steps"] = record["env_steps"]
        state["evals"] += [record["env_steps"]] if "eval/return_mean" in record else []


def _checkpoints(run_dir: str) -> list[int]:
    """Steps of the committed checkpoints: orbax writes a save under a temporary name and renames
    it to the bare step number once it is final."""
    try:
        return sorted(int(n) for n in os.listdir(os.path.join(run_dir, "checkpoints")) if n.isdigit())
    except FileNotFoundError:
        return []


def _window_max(samples: list[dict], t0: float, t1: float) -> dict:
    return max((s for s in samples if t0 <= s["t"] <= t1), key=lambda s: s["rss_kb"])


def soak(preset: str, spec: dict, run_dir: str, interval: float, window_s: float) -> dict:
    """Runs train.py for ``preset``, sampling its memory, and returns :func:`analyse`'s row."""
    cmd = [
        sys.executable, os.path.join(ROOT, "scripts", "train.py"),
        "--preset", preset, "--steps", str(spec["steps"]), "--run-dir", run_dir, "--no-progress",
        "--replay.capacity", str(spec["capacity"]),
        "--loop.eval_every", str(spec["eval_every"]),
        "--loop.log_every_s", "0.5",
        "--loop.checkpoint_every_s", str(spec["checkpoint_every_s"]),
    ]
    full_at = (spec["capacity"] // spec["num_envs"]) * spec["num_envs"]

    start = time.time()
    proc = psutil.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                        env={**os.environ, "JAX_LOG_COMPILES": "1"})
    progress = {"offset": 0, "env_steps": 0, "evals": []}
    lines: list[tuple[float, str]] = []

    def reader():
        for line in proc.stdout:
            lines.append((round(time.time() - start, 3), line.rstrip("\n")))

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    samples = []
    metrics_path = os.path.join(run_dir, "metrics.jsonl")
    while proc.poll() is None:
        memory = _memory(proc)
        if memory is not None:
            _read_progress(metrics_path, progress)
            samples.append({"t": round(time.time() - start, 3), "env_steps": progress["env_steps"], **memory,
                            "checkpoints": _checkpoints(run_dir),
                            "post_full_eval": any(e >= full_at for e in progress["evals"])})
        time.sleep(interval)
    thread.join(timeout=10)
    wall = time.time() - start
    with open(os.path.join(run_dir, "train_output.log"), "w") as f:  # timestamped stdout + stderr of train.py
        f.writelines(f"{t:9.3f} {line}\n" for t, line in lines)
    if proc.returncode != 0:
        tail = "\n".join(line for _, line in lines[-60:])
        raise RuntimeError(f"{preset}: train.py exited with {proc.returncode}:\n{tail}")
    _read_progress(metrics_path, progress)
    with open(os.path.join(run_dir, "summary.json")) as f:
        summary = json.load(f)
    row = analyse(samples, lines, full_at, spec["steps"], window_s)
    return {
        "preset": preset, "command": "JAX_LOG_COMPILES=1 " + " ".join(["python", *cmd[1:]]).replace(f"{ROOT}/", ""),
        "replay_capacity": spec["capacity"], "num_envs": spec["num_envs"], "env_steps": summary["env_steps"],
        "capacity_multiple": round(summary["env_steps"] / full_at, 2), "updates": summary["updates"],
        "evaluations": summary["evaluations"], "eval_env_steps": progress["evals"],
        "process_wall_clock_s": round(wall, 1), **row,
    }


def analyse(samples: list[dict], lines: list[tuple[float, str]], full_at: int, steps: int, window_s: float) -> dict:
    """Baseline, final, growth and the rest (see the module docstring) from the memory
    ``samples`` (``t``, ``env_steps``, ``rss_kb``, ``post_full_eval``, ``checkpoints``,
    ``threads``, ``children``) and the timestamped output ``lines`` of a run of ``steps``
    env steps whose buffer is full at ``full_at``. Raises ``RuntimeError`` when the run
    was too short to tell."""
    # The baseline: full buffer, a post-full evaluation finished, a post-full checkpoint committed.
    base_i = next((i for i, s in enumerate(samples) if s["env_steps"] >= full_at and s["post_full_eval"]
                   and any(c >= full_at for c in s["checkpoints"])), None)
    if base_i is None:
        raise RuntimeError("no sample after the buffer was full plus a post-full eval and checkpoint")
    base = samples[base_i]
    # The training loop's last samples: before the last vector step is logged, i.e. before the
    # end-of-run evaluation, save and teardown (closing the writers frees memory, which would flatter).
    loop_end_i = max(i for i, s in enumerate(samples) if s["env_steps"] < steps)
    loop_end = samples[loop_end_i]
    if loop_end["t"] - base["t"] < 2 * window_s:
        raise RuntimeError(f"under {2 * window_s:.0f} s between the baseline and the end of the loop; run longer")
    # RSS saw-tooths by a few percent within seconds (each train call's temporaries), so the
    # compared values are the peaks over a window: [baseline, baseline + W] and [loop end - W, loop end].
    base_w = _window_max(samples, base["t"], base["t"] + window_s)
    final_w = _window_max(samples, loop_end["t"] - window_s, loop_end["t"])
    in_loop = samples[base_i:loop_end_i + 1]
    peak = max(samples[base_i:], key=lambda s: s["rss_kb"])
    pct = lambda a, b: round(100.0 * (a["rss_kb"] - b["rss_kb"]) / b["rss_kb"], 2)  # noqa: E731
    growth = pct(final_w, base_w)

    # Least-squares slope of RSS (MiB) against env steps over the loop after the baseline, per 1,000 steps.
    xs = np.array([s["env_steps"] for s in in_loop], float)
    slope = float(1000 * np.polyfit(xs, [s["rss_kb"] / 1024 for s in in_loop], 1)[0]) if len(set(xs)) > 1 else None
    # Peak RSS in each quarter of the loop after the baseline (a leak rises quarter by quarter).
    t0, t1 = base["t"], loop_end["t"]
    quarters = [_window_max(samples, t0 + k * (t1 - t0) / 4, t0 + (k + 1) * (t1 - t0) / 4) for k in range(4)]
    # Sudden releases: RSS falling by more than 100 MiB within 2 s (the allocator handing heap back).
    releases = []
    for i, s in enumerate(samples):
        prev = [p for p in samples[max(0, i - 6):i] if s["t"] - p["t"] <= 2.0]
        if prev and max(p["rss_kb"] for p in prev) - s["rss_kb"] > 100 * 1024:
            if not releases or s["t"] - releases[-1]["t"] > 5.0:
                releases.append({"t": s["t"], "env_steps": s["env_steps"]})
            releases[-1].update(rss_mib_before=round(max(p["rss_kb"] for p in prev) / 1024, 1),
                                rss_mib_after=round(s["rss_kb"] / 1024, 1), t_end=s["t"])

    # Steady state: the same comparison started after the last sudden release that came after the
    # baseline (the allocator handing back one-time memory, which otherwise makes growth negative
    # and would hide a leak in the window before it). Not defined if no such release left 2 W of loop.
    post = [r for r in releases if r["t"] >= base["t"] and r["t_end"] <= loop_end["t"] - 2 * window_s]
    steady_start = post[-1]["t_end"] if post else base["t"]
    steady_w = _window_max(samples, steady_start, steady_start + window_s)
    steady_growth = pct(final_w, steady_w)

    compile_lines = [(t, l) for t, l in lines if "Compiling" in l or "Finished XLA compilation" in l]
    mib = lambda kb: round(kb / 1024, 1)  # noqa: E731
    point = lambda s: {"t": s["t"], "env_steps": s["env_steps"], "rss_mib": mib(s["rss_kb"])}  # noqa: E731
    return {
        "buffer_full_at_env_steps": full_at,
        "checkpoints_seen": sorted({c for s in samples for c in s["checkpoints"]}),
        "window_s": window_s,
        "baseline_sample": point(base),
        "baseline": {**point(base_w), "window": [base["t"], round(base["t"] + window_s, 3)]},
        "loop_end_sample": point(loop_end),
        "final": {**point(final_w), "window": [round(loop_end["t"] - window_s, 3), loop_end["t"]]},
        "max_after_baseline": point(peak),
        "peak_rss_whole_run_mib": mib(max(s["rss_kb"] for s in samples)),
        "growth_pct": growth,
        "single_sample_growth_pct": pct(samples[-1], base),
        "steady": {**point(steady_w), "window": [steady_start, round(steady_start + window_s, 3)],
                   "after_release": bool(post)},
        "steady_growth_pct": steady_growth,
        "quarter_peaks_mib": [mib(q["rss_kb"]) for q in quarters],
        "slope_mib_per_1000_env_steps": round(slope, 3) if slope is not None else None,
        "pass_growth": growth < GROWTH_LIMIT_PCT,
        "pass_steady_growth": steady_growth < GROWTH_LIMIT_PCT,
        "pass": growth < GROWTH_LIMIT_PCT and steady_growth < GROWTH_LIMIT_PCT,
        "releases": releases,
        "children_seen": max(s["children"] for s in samples),
        "threads_baseline_loop_end": [base["threads"], loop_end["threads"]],
        "compiles_total": sum("Finished XLA compilation" in l for _, l in compile_lines),
        # env steps of the last sample at or before each compile (env steps never decrease)
        "compiles_after_baseline": [{"t": t, "env_steps": max([s["env_steps"] for s in samples if s["t"] <= t], default=0),
                                     "line": l[:300]} for t, l in compile_lines if t > base["t"]],
        "samples": samples,
    }


def plot(row: dict, path: str) -> None:
    from matplotlib.figure import Figure

    s = row["samples"]
    fig = Figure(figsize=(9, 4.8), layout="tight")
    ax = fig.subplots()
    ax.plot([x["env_steps"] for x in s], [x["rss_kb"] / 1024 for x in s], lw=0.8, label="RSS (process + children)")
    ax.axvline(row["buffer_full_at_env_steps"], color="tab:red", ls="--", lw=1.5, label="buffer full")
    ax.axvline(row["baseline_sample"]["env_steps"], color="tab:green", ls=":", lw=1.5,
               label="baseline (full + post-full eval + checkpoint)")
    base, final = row["baseline"]["rss_mib"], row["final"]["rss_mib"]
    ax.axhline(base, color="tab:green", lw=0.8, label=f"baseline {base:.0f} MiB (peak over {row['window_s']:.0f} s)")
    ax.axhline(base * (1 + GROWTH_LIMIT_PCT / 100), color="gray", ls="-.", lw=0.8, label="baseline + 5%")
    if row["steady"]["after_release"]:
        steady = row["steady"]["rss_mib"]
        ax.axhline(steady, color="tab:cyan", lw=0.8, label=f"steady {steady:.0f} MiB (peak, {row['window_s']:.0f} s after release)")
        ax.axhline(steady * (1 + GROWTH_LIMIT_PCT / 100), color="tab:cyan", ls="-.", lw=0.8, label="steady + 5%")
    ax.plot([row["final"]["env_steps"]], [final], "k^", label=f"final {final:.0f} MiB (peak, last {row['window_s']:.0f} s of loop)")
    for i, e in enumerate(row["eval_env_steps"]):
        ax.axvline(e, color="tab:purple", alpha=0.3, lw=0.8, label="evaluation" if i == 0 else None)
    for i, c in enumerate(row["checkpoints_seen"]):
        ax.axvline(c, color="tab:orange", alpha=0.3, lw=0.8, label="checkpoint" if i == 0 else None)
    ax.set_xlabel("env steps")
    ax.set_ylabel("RSS (MiB)")
    ax.set_ylim(bottom=0)
    verdict = "PASS" if row["pass"] else "FAIL"
    ax.set_title(f"{row['preset']}: replay capacity {row['replay_capacity']}, {row['capacity_multiple']:g}x capacity; "
                 f"growth {row['growth_pct']:+.2f}%, steady growth {row['steady_growth_pct']:+.2f}% ({verdict})", fontsize=10)
    ax.legend(fontsize=7, loc="lower right", ncol=2)
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    parser = Parser(prog="memory_soak.py", description=__doc__.split("\n")[0])
    parser.add_argument("--presets", nargs="+", default=list(SOAKS), choices=list(SOAKS))
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the default run lengths")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between RSS samples")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--tag", default="cpu", help="suffix of the JSON file name")
    parser.add_argument("--keep-runs", default=None, help="keep run directories here")
    parser.add_argument("--window-s", type=float, default=15.0, help="window over which baseline and final peaks are taken")
    args = parser.parse_args(argv)
    if args.scale <= 0 or args.interval <= 0 or args.window_s <= 0:
        parser.error("--scale, --interval and --window-s must be > 0")

    parser.writable(os.path.join(args.out, f"memory_soak_{args.tag}.json"))
    run_root = args.keep_runs or tempfile.mkdtemp(prefix="memory_soak_")
    rows = []
    for preset in args.presets:
        spec = dict(SOAKS[preset])
        spec["steps"] = int(round(spec["steps"] * args.scale / spec["num_envs"])) * spec["num_envs"]
        row = soak(preset, spec, os.path.join(run_root, preset), args.interval, args.window_s)
        png = os.path.join(args.out, f"memory_soak_{preset}.png")
        plot(row, png)
        row["plot"] = os.path.relpath(png, ROOT)
        rows.append(row)
        print(f"{preset}: growth {row['growth_pct']:+.2f}%, steady growth {row['steady_growth_pct']:+.2f}% "
              f"({'PASS' if row['pass'] else 'FAIL'}); {len(row['releases'])} releases, "
              f"{len(row['compiles_after_baseline'])} compiles after the baseline", flush=True)

    table = (["preset", "capacity", "steps", "full at", "baseline at", "baseline MiB", "final MiB", "max MiB", "growth",
              "steady", "MiB/1k steps", "result"],
             [[r["preset"], r["replay_capacity"], r["env_steps"], r["buffer_full_at_env_steps"],
               r["baseline_sample"]["env_steps"], r["baseline"]["rss_mib"], r["final"]["rss_mib"],
               r["max_after_baseline"]["rss_mib"], f"{r['growth_pct']:+.2f}%", f"{r['steady_growth_pct']:+.2f}%",
               r["slope_mib_per_1000_env_steps"], "PASS" if r["pass"] else "FAIL"] for r in rows])
    result = {
        "benchmark": "memory_soak",
        "criterion": f"pass: growth_pct = (final - baseline) / baseline < {GROWTH_LIMIT_PCT}% AND "
                     f"steady_growth_pct = (final - steady) / steady < {GROWTH_LIMIT_PCT}%",
        "rss": "RSS of the train.py process (psutil: /proc/<pid>/statm) plus the RSS of its descendants, "
               f"sampled every {args.interval} s",
        "definitions": "benchmarks/README.md, 'Memory soak'",
        "env_steps_source": "last record of metrics.jsonl (--loop.log_every_s 0.5)",
        "runs": rows,
        "all_pass": all(r["pass"] for r in rows),
    }
    write_result(os.path.join(args.out, f"memory_soak_{args.tag}.json"), result, table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
