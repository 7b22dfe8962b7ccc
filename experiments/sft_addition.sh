#!/usr/bin/env bash
# Reproduces the SFT figures of docs/results.md: trains configs/sft.py, times the whole command, and copies the
# curves next to this script. Usage: bash experiments/sft_addition.sh [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
workdir=${1:-/tmp/rr_sft_addition}
if [ -e "$workdir" ]; then
  echo "$workdir exists; pass a new directory (rr never overwrites a run)" >&2
  exit 2
fi
start=$(date +%s)
python -m rr.main --config configs/sft.py --workdir "$workdir"
echo "wall seconds: $(( $(date +%s) - start ))"
python - "$workdir" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(f"{sys.argv[1]}/metrics.jsonl")]
loss = {r["step"]: r["train/loss"] for r in rows if "train/loss" in r}
for r in rows:
  if "eval/accuracy" in r:
    print(f"| {r['step']} | {loss.get(r['step'], float('nan')):.4f} | {r['eval/accuracy']:.3f} | {r['eval/step_accuracy']:.3f} |")
PY
cp "$workdir/curves.png" experiments/sft_addition_curves.png
