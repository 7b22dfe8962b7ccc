#!/usr/bin/env bash
# Two commits of rr, measured in one command: each commit's own step benchmarks (grpo_step, train_step) and its
# SFT and GRPO loops end to end (configs/sft.py for 300 steps, then configs/grpo.py from it for 60 steps),
# interleaved, twice over, so both see the same machine state. Prints one JSON line per measurement.
# Usage: bash benchmarks/compare_commits.sh BASE_TREE NEW_TREE [OUT_DIR]
#   e.g. git worktree add /tmp/base 683dbe4 && bash benchmarks/compare_commits.sh /tmp/base . /tmp/compare
set -euo pipefail
base=$(cd "$1" && pwd); new=$(cd "$2" && pwd); out=${3:-$(mktemp -d)}
mkdir -p "$out"
for round in 1 2; do
  for tree in "$base" "$new"; do
    cd "$tree"
    commit=$(git rev-parse --short HEAD)
    for bench in grpo_step train_step; do
      echo "{\"commit\": \"$commit\", \"round\": $round, \"bench\": \"$bench\", \"out\": $(python benchmarks/$bench.py --size tiny 2>/dev/null | tail -1)}"
    done
    run="$out/${commit}_$round"
    if [ -e "$run" ]; then echo "$run exists; pass a new OUT_DIR" >&2; exit 2; fi
    small="--config.train.eval_every=0 --config.eval.num_examples=16 --config.data.test_size=16"
    python -m rr.main --config configs/sft.py --config.train.steps=300 --config.train.checkpoint_every=100 $small \
      --workdir "$run/sft" > "$run.sft.log" 2>&1
    python -m rr.main --config configs/grpo.py --config.init_checkpoint="$run/sft" --config.train.steps=60 \
      --config.train.checkpoint_every=20 $small --workdir "$run/grpo" > "$run.grpo.log" 2>&1
    python -c "import json, sys; a, b = (json.load(open(f'$run/{s}/summary.json')) for s in ('sft', 'grpo')); \
print(json.dumps({'commit': '$commit', 'round': $round, 'bench': 'loops', 'sft_wall_s': round(a['wall_seconds'], 1), \
'grpo_wall_s': round(b['wall_seconds'], 1)}))"
  done
done
