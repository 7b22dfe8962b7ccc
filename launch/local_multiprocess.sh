#!/usr/bin/env bash
# Runs rr as N processes on this machine (one CPU device each), the way a multi-host job runs:
#   bash launch/local_multiprocess.sh 2 --config configs/sft.py:runlocal --workdir /tmp/mp
# Each process calls jax.distributed.initialize with the coordinator below (RR_DISTRIBUTED=1).
set -euo pipefail
n=${1:?number of processes}; shift
export RR_DISTRIBUTED=1 JAX_PLATFORMS=cpu
export JAX_COORDINATOR_ADDRESS=${JAX_COORDINATOR_ADDRESS:-127.0.0.1:12355} JAX_NUM_PROCESSES=$n
pids=()
for ((i = 0; i < n; i++)); do
  JAX_PROCESS_ID=$i python -m rr.main "$@" & pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
exit $status
