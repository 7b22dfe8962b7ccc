#!/usr/bin/env bash
# Runs rr on every host of a Cloud TPU pod slice. jax.distributed.initialize() discovers the pod by itself.
#   bash launch/tpu_pod.sh TPU_NAME ZONE --config configs/sft.py --workdir gs://bucket/run
# The workdir must be reachable from every host (a GCS bucket or a shared filesystem).
set -euo pipefail
name=${1:?tpu name}; zone=${2:?zone}; shift 2
args=$(printf '%q ' "$@")
gcloud compute tpus tpu-vm ssh "$name" --zone "$zone" --worker=all --command \
  "cd ~/rr && pip install -q -r requirements.txt 'jax[tpu]' && RR_DISTRIBUTED=1 python -m rr.main $args"
