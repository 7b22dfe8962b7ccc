#!/usr/bin/env bash
# Runs rr on every host of a Cloud TPU pod slice: copies this repository's code at a commit to every worker,
# installs it, runs it on all workers at once and streams their logs. jax.distributed.initialize() discovers
# the pod by itself.
#   bash launch/tpu_pod.sh [--dry-run] TPU_NAME ZONE --config configs/sft.py --workdir gs://bucket/run
# Reads: RR_COMMIT (what to copy, default HEAD: commit your changes first; uncommitted edits do not travel),
# PYTHON (the interpreter on the workers, default python3). The workdir must be reachable from every host (a GCS
# bucket or a shared filesystem). Each worker unpacks into ~/rr-<commit>, so nothing already there is replaced.
# --dry-run prints the commands (the archive, the copy, the run) and runs nothing.
set -euo pipefail
dry=0
if [[ ${1:-} == --dry-run ]]; then dry=1; shift; fi
name=${1:?tpu name}; zone=${2:?zone}; shift 2
repo=$(cd "$(dirname "$0")/.." && pwd)
commit=$(git -C "$repo" rev-parse --short "${RR_COMMIT:-HEAD}")
python=${PYTHON:-python3}
archive="/tmp/rr-$commit.tar.gz"
remote="~/rr-$commit"
args=$(printf '%q ' "$@")
run() {
  if ((dry)); then printf '%q ' "$@"; echo; else "$@"; fi
}
run git -C "$repo" archive --format=tar.gz -o "$archive" "$commit"
run gcloud compute tpus tpu-vm scp "$archive" "$name:$archive" --zone "$zone" --worker=all
run gcloud compute tpus tpu-vm ssh "$name" --zone "$zone" --worker=all --command \
  "mkdir -p $remote && tar -xzf $archive -C $remote && cd $remote && $python -m pip install -q -r requirements.txt 'jax[tpu]' && RR_DISTRIBUTED=1 $python -m rr.main $args"
