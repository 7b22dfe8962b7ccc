#!/usr/bin/env bash
# Runs rr as N processes on this machine (one CPU device each), the way a multi-host job runs:
#   bash launch/local_multiprocess.sh [--dry-run] N --config configs/sft.py:runlocal --workdir /tmp/mp
# Each process calls jax.distributed.initialize with the coordinator below (RR_DISTRIBUTED=1).
# Reads: PYTHON (the interpreter, default python), JAX_COORDINATOR_ADDRESS (default 127.0.0.1:12355).
# --dry-run prints each process's command line and runs nothing.
set -euo pipefail
dry=0
if [[ ${1:-} == --dry-run ]]; then dry=1; shift; fi
n=${1:?number of processes}; shift
python=${PYTHON:-python}
export RR_DISTRIBUTED=1 JAX_PLATFORMS=cpu
export JAX_COORDINATOR_ADDRESS=${JAX_COORDINATOR_ADDRESS:-127.0.0.1:12355} JAX_NUM_PROCESSES=$n
pids=()
for ((i = 0; i < n; i++)); do
  if ((dry)); then
    echo "RR_DISTRIBUTED=1 JAX_PLATFORMS=cpu JAX_COORDINATOR_ADDRESS=$JAX_COORDINATOR_ADDRESS JAX_NUM_PROCESSES=$n" \
      "JAX_PROCESS_ID=$i $(printf '%q ' "$python" -m rr.main "$@")"
    continue
  fi
  JAX_PROCESS_ID=$i "$python" -m rr.main "$@" & pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
exit $status
