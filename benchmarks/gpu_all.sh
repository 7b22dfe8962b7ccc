#!/usr/bin/env bash
# Issue 13's speed goals on one lent H100/H200, in one device call: rr against the Hugging Face peer for SFT
# (qwen0.5b, 8 x 2048, bf16), sampling (batch 256, prompt 128, 256 new tokens) and a GRPO step (qwen0.5b), the
# cuDNN attention and chunked-loss checks, and a jax.profiler trace of rr's train step. Results under $OUT:
# results.jsonl (every JSON line), log.txt (each command, its exit status, the tails of its other output and of
# its stderr: the tests' summary is there), profile.tgz, table.txt (the ratios, printed last). Commands run in
# order of importance, each with its own timeout, cut to what is left of BUDGET_S (default 540 s, inside a 600 s
# call), so the call ends in time.
#
# Before the call, here:  bash benchmarks/gpu_all.sh --prepare   (copies ../shared/bench/hf_peer.py to .gpu/)
# The call: carry .gpu and .whl (wheels for what the image lacks: ml_collections, tensorboardX; for the TRL peer
# trl, datasets, dill, multiprocess; `pip download --no-deps -d .whl ml_collections tensorboardX trl datasets dill
# multiprocess` fetches them), command `bash benchmarks/gpu_all.sh`, timeout_s 600.
# --dry-run lists the commands without running anything.
set -u
MODE=${1:-run}
case "$MODE" in run|--dry-run|--prepare) ;; *) echo "usage: $0 [--dry-run|--prepare]" >&2; exit 2;; esac
PY=${PYTHON:-python3}
OUT=${OUT:-/tmp/gpu_all}
BUDGET_S=${BUDGET_S:-540}
PEER=.gpu/hf_peer.py
START=$SECONDS

if [ "$MODE" = --prepare ]; then
  mkdir -p .gpu && cp ../shared/bench/hf_peer.py "$PEER" && echo "copied $PEER; carry: .gpu .whl"
  exit
fi

# module:wheel-prefix pairs: a wheel from .whl/ is installed only when its module does not import.
NEEDED="ml_collections:ml_collections tensorboardX:tensorboardx trl:trl datasets:datasets dill:dill"
NEEDED="$NEEDED multiprocess:multiprocess"
install_missing() {
  local wheels=() pair
  for pair in $NEEDED; do
    if ! "$PY" -c "import ${pair%%:*}" 2>/dev/null; then
      wheels+=($(ls .whl/${pair#*:}-*.whl 2>/dev/null))
    fi
  done
  [ ${#wheels[@]} -eq 0 ] && return
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "${wheels[@]}"
}

# step NAME TIMEOUT_S COMMAND...: runs it with what is left of the budget, JSON lines to results.jsonl.
step() {
  local name=$1 limit=$2; shift 2
  if [ "$MODE" = --dry-run ]; then echo "[$name ${limit}s] $*"; return; fi
  local left=$((BUDGET_S - (SECONDS - START)))
  [ "$limit" -gt "$left" ] && limit=$left
  if [ "$limit" -lt 20 ]; then echo "== $name: skipped, ${left}s left" | tee -a "$OUT/log.txt"; return; fi
  echo "== $name (${limit}s): $*" >>"$OUT/log.txt"
  local t0=$SECONDS
  timeout "$limit" "$@" >"$OUT/stdout.tmp" 2>"$OUT/stderr.tmp"
  local rc=$?
  grep '^{' "$OUT/stdout.tmp" | sed "s/^{/{\"step\": \"$name\", /" | tee -a "$OUT/results.jsonl"
  echo "rc=$rc in $((SECONDS - t0))s; stdout tail (JSON lines are in results.jsonl):" >>"$OUT/log.txt"
  grep -v '^{' "$OUT/stdout.tmp" | tail -30 >>"$OUT/log.txt"
  echo "stderr tail:" >>"$OUT/log.txt"
  tail -15 "$OUT/stderr.tmp" >>"$OUT/log.txt"
  echo "== $name: rc=$rc, $((SECONDS - t0))s"
}

TRAIN="benchmarks/train_step.py --size qwen0.5b --dtype bfloat16 --batch 8 --seq 2048 --reps 3 --steps 2"
GEN="benchmarks/generate.py --size qwen0.5b --dtype bfloat16 --batch 256 --prompt-len 128 --new-tokens 256 --reps 2"
if [ "$MODE" = --dry-run ]; then
  echo "[setup] cp ../shared/bench/hf_peer.py $PEER (if missing); pip install --target /tmp/site the .whl/ wheels" \
       "of modules that do not import: $NEEDED"
else
  mkdir -p "$OUT" && : >"$OUT/results.jsonl" && : >"$OUT/log.txt"
  [ -f "$PEER" ] || { mkdir -p .gpu && cp ../shared/bench/hf_peer.py "$PEER"; } 2>/dev/null \
    || echo "no $PEER: the peer steps fail"
  install_missing || echo "wheel install failed" | tee -a "$OUT/log.txt"
  export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$PY" -c "import jax; print(jax.__version__, jax.devices())"
fi
step tests 100 "$PY" -m pytest -q -p no:cacheprovider tests/test_layers.py tests/test_chunked_loss.py \
  -k "attention or cudnn or chunk"
step peer_train 90 "$PY" "$PEER" --size qwen0.5b --what train --dtype bfloat16 --train-batch 8 --seq 2048
step rr_train 150 "$PY" $TRAIN --attention auto --loss-chunk-tokens 8192 --profile-dir "$OUT/profile" \
  --profile-steps 2
step peer_gen 80 "$PY" "$PEER" --size qwen0.5b --what gen --dtype bfloat16 --batch 256 --prompt-len 128 \
  --new-tokens 256 --reps 2
step rr_gen 120 "$PY" $GEN
step peer_grpo 90 "$PY" "$PEER" --size qwen0.5b --what grpo --dtype bfloat16
step rr_grpo 120 "$PY" benchmarks/grpo_step.py --size qwen0.5b --dtype bfloat16 --steps 4
step rr_train_xla 120 "$PY" $TRAIN --attention xla --loss-chunk-tokens 0
[ "$MODE" = --dry-run ] && exit

# The trace as one small archive ($OUT comes back two folders deep at most), then the ratios.
if [ -d "$OUT/profile" ]; then
  tar -czf "$OUT/profile.tgz" -C "$OUT" profile && rm -rf "$OUT/profile"
  [ "$(stat -c %s "$OUT/profile.tgz")" -gt 15000000 ] && rm "$OUT/profile.tgz" && echo "profile over 15 MB: dropped"
fi
rm -f "$OUT/stdout.tmp" "$OUT/stderr.tmp"
"$PY" - "$OUT/results.jsonl" <<'EOF' | tee "$OUT/table.txt"
import json, sys
rows = {}
for line in open(sys.argv[1]):
  row = json.loads(line)
  rows[row["step"]] = row
def get(step, key):
  return rows.get(step, {}).get(key)
def ratio(a, b):
  return f"{a / b:.2f}x" if a and b else "n/a"
def fmt(x):
  return "n/a" if x is None else f"{x:.3g}"
print("goal | rr | peer | rr / peer | rr MFU or bandwidth fraction")
for label, rr, peer, key, extra in (
    ("SFT tok/s (auto attention, chunked loss)", "rr_train", "peer_train", "tokens_per_s", "mfu"),
    ("SFT tok/s (xla attention, full logits)", "rr_train_xla", "peer_train", "tokens_per_s", "mfu"),
    ("sampling new tok/s, 256 x (128 + 256)", "rr_gen", "peer_gen", "new_tokens_per_s", "decode_bandwidth_fraction")):
  print(f"{label} | {fmt(get(rr, key))} | {fmt(get(peer, key))} | {ratio(get(rr, key), get(peer, key))} | "
        f"{extra} {fmt(get(rr, extra))}")
rr_grpo, peer_grpo = get("rr_grpo", "median_s_per_step"), get("peer_grpo", "median_s_per_step")
print(f"GRPO s/step (peer / rr = speed-up) | {fmt(rr_grpo)} | {fmt(peer_grpo)} | {ratio(peer_grpo, rr_grpo)} | "
      f"mfu_training {fmt(get('rr_grpo', 'mfu_training'))}")
EOF
