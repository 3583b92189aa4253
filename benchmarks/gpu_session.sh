#!/usr/bin/env bash
# What a lent GPU runs, in one command per part, every step under its own timeout, logs
# and results under $OUT (the device tool brings that folder back).
#
#   bash benchmarks/gpu_session.sh throughput        # both Atari presets, ~5 min on an H200
#   bash benchmarks/gpu_session.sh atari SECONDS     # atari100k-gumbel on Breakout for SECONDS
#   SCALE=1 OUT=/tmp/out bash benchmarks/gpu_session.sh throughput   # the same at CPU size
#
# The GPU image lacks some packages: they travel as wheels in .whl/ (see ../shared/FACTS.md).
set -u
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
if [ "${NO_WHEELS:-0}" != 1 ] && [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    > "$OUT/pip.log" 2>&1 || { cat "$OUT/pip.log"; exit 1; }
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1
PY=${PY:-python3}
SCALE_ARGS=()
[ "${SCALE:-0}" = 1 ] && SCALE_ARGS=(--scale)

step() {  # step NAME SECONDS COMMAND...: one logged step that cannot outlive its budget
  local name=$1 seconds=$2
  shift 2
  echo "== $name ($seconds s): $*" | tee -a "$OUT/session.log"
  local t0=$SECONDS
  timeout --signal=TERM --kill-after=20 "$seconds" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "== $name: exit $rc after $((SECONDS - t0)) s" | tee -a "$OUT/session.log"
  tail -n 25 "$OUT/$name.log"
}

case "${1:-}" in
  throughput)
    { nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no GPU";
      $PY -c "import jax, flax, optax, orbax.checkpoint as o; print('jax', jax.__version__, jax.devices(), 'flax', flax.__version__, 'optax', optax.__version__, 'orbax', o.__version__)"; } \
      > "$OUT/versions.log" 2>&1
    cat "$OUT/versions.log"
    step throughput_gumbel 240 $PY benchmarks/throughput.py --preset atari100k-gumbel --loop-steps "${LOOP_STEPS:-320}" \
      "${SCALE_ARGS[@]}" --out "$OUT/throughput_atari100k-gumbel.json"
    step throughput_puct 240 $PY benchmarks/throughput.py --preset atari100k --loop-steps "${LOOP_STEPS:-320}" \
      "${SCALE_ARGS[@]}" --out "$OUT/throughput_atari100k.json"
    ;;
  atari)
    seconds=${2:-300}
    preset=atari100k-gumbel every=4000
    [ "${SCALE:-0}" = 1 ] && preset=atari-debug every=200
    # Evaluation games capped at 2,000 agent steps (the protocol's 27,000 would let a policy
    # that never serves play out the cap): a partial run's curve, not a protocol score.
    step atari_breakout "$seconds" $PY scripts/train.py --preset $preset --env Breakout --run-dir "$OUT/run" \
      --no-tensorboard --no-plot --loop.eval_every $every --env.eval_episodes 8 --env.num_eval_envs 8 \
      --env.eval_max_episode_steps 2000 --loop.log_every_s 20 --loop.checkpoint_every_s 100000
    cp "$OUT/run/metrics.jsonl" "$OUT/atari_breakout_metrics.jsonl" 2>/dev/null
    cp "$OUT/run/summary.json" "$OUT/atari_breakout_summary.json" 2>/dev/null
    rm -rf "$OUT/run"
    ;;
  *)
    echo "usage: $0 throughput | atari SECONDS" >&2
    exit 2
    ;;
esac
( cd "$OUT" && tar czf logs.tgz ./*.log 2>/dev/null && rm -f ./*.log )
ls -la "$OUT"
