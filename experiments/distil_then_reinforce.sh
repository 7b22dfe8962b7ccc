#!/usr/bin/env bash
# Reproduces the distil-then-reinforce tables (README, docs/results.md) over several seeds. For each seed: the
# default job (SFT on 300 rationales, then GRPO), then SFT alone on the same 300 rationales for the same wall time (its
# steps = the job's wall time / the SFT stage's seconds per step, measured in this run), then python -m rr.eval
# on both stages of the job (reports in each stage's eval/). Prints the tables as mean +- std over seeds and
# the per-seed numbers (experiments/summarize_distil_then_reinforce.py).
# Usage: bash experiments/distil_then_reinforce.sh [DIR]   (DIR must not exist)   SEEDS="0 1 2" by default
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-/tmp/rr_distil_then_reinforce}
seeds=${SEEDS:-0 1 2}
if [ -e "$dir" ]; then
  echo "$dir exists; pass a new directory (rr never overwrites a run)" >&2
  exit 2
fi
mkdir -p "$dir"
for seed in $seeds; do
  run="$dir/seed$seed"
  start=$(date +%s)
  python -m rr.main --config configs/default.py --config.seed="$seed" --workdir "$run/default"
  job_seconds=$(( $(date +%s) - start ))
  echo "$job_seconds" > "$run/default_wall_seconds"
  steps=$(python -c "import json,sys; s=json.load(open(sys.argv[1])); print(int($job_seconds / s['sft/train/seconds_per_step']))" \
    "$run/default/summary.json")
  start=$(date +%s)
  python -m rr.main --config configs/default.py --config.trainer=sft --config.seed="$seed" \
    --config.data.train_size=300 --config.train.steps="$steps" --config.train.eval_every=300 \
    --config.train.checkpoint_every="$steps" --workdir "$run/sft_same_budget"
  echo $(( $(date +%s) - start )) > "$run/sft_same_budget_wall_seconds"
  for stage in sft grpo; do  # pass@k, maj@k and CoT-pass@k of each stage (docs/guide.md: "Evaluate a checkpoint")
    python -m rr.eval --checkpoint "$run/default/$stage" --config configs/default.py --config.seed="$seed" \
      --k 1,2,4,8,16 --samples 16
  done
done
python experiments/summarize_distil_then_reinforce.py "$dir" $seeds
first=$(echo $seeds | cut -d' ' -f1)
cp "$dir/seed$first/default/grpo/curves.png" experiments/distil_then_reinforce_grpo_curves.png
cp "$dir/seed$first/default/grpo/eval/pass_at_k.png" experiments/distil_then_reinforce_pass_at_k.png
