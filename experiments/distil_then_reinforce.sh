#!/usr/bin/env bash
# Reproduces the README's distil-then-reinforce table: runs the default job (SFT on 300 rationales, then
# GRPO), then SFT alone on the same 300 rationales for about the same wall time, and prints the rows;
# then evaluates both stages of the job with python -m rr.eval (reports in each stage's eval/).
# Usage: bash experiments/distil_then_reinforce.sh [DIR]   (DIR must not exist; two runs go inside it)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-/tmp/rr_distil_then_reinforce}
if [ -e "$dir" ]; then
  echo "$dir exists; pass a new directory (rr never overwrites a run)" >&2
  exit 2
fi
same_budget_steps=${SAME_BUDGET_STEPS:-1800}  # SFT steps that take about as long as the default job here
start=$(date +%s)
python -m rr.main --config configs/default.py --workdir "$dir/default"
job_seconds=$(( $(date +%s) - start ))
start=$(date +%s)
python -m rr.main --config configs/sft.py --config.data.train_size=300 --config.train.steps="$same_budget_steps" \
  --config.train.eval_every=300 --config.train.checkpoint_every="$same_budget_steps" --workdir "$dir/sft_same_budget"
sft_seconds=$(( $(date +%s) - start ))
python - "$dir" "$job_seconds" "$sft_seconds" <<'PY'
import json, sys
d, job_s, sft_s = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
job = json.load(open(f"{d}/default/summary.json"))
same = json.load(open(f"{d}/sft_same_budget/summary.json"))
sft_steps = job["sft/step"]
print("| run | held-out accuracy | wall time |")
print("|---|---:|---:|")
print(f"| SFT only: 300 rationales, {sft_steps} steps (the job's stage 1) | {job['eval/accuracy_initial']:.3f} | "
      f"{job['sft/wall_seconds']:.0f} s |")
print(f"| SFT + GRPO: stage 1, then {job['grpo/step']} GRPO steps (the default job) | {job['eval/accuracy']:.3f} | "
      f"{job_s} s |")
print(f"| SFT only, same budget: 300 rationales, {same['step']} steps | {same['eval/accuracy']:.3f} | {sft_s} s |")
PY
cp "$dir/default/grpo/curves.png" experiments/distil_then_reinforce_grpo_curves.png
for stage in sft grpo; do  # pass@k, maj@k and CoT-pass@k of each stage (README: "Evaluate a checkpoint")
  python -m rr.eval --checkpoint "$dir/default/$stage" --config configs/default.py --k 1,2,4,8,16 --samples 16
done
cp "$dir/default/grpo/eval/pass_at_k.png" experiments/distil_then_reinforce_pass_at_k.png
