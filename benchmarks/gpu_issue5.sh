#!/usr/bin/env bash
# Issue 5's GPU checks in one device call (results: benchmarks/RESULTS.md): the HF-directory SFT/GRPO/eval/export
# tests and the precision tests on the GPU, rr.train.memory's estimate against the measured peak, and bf16 train
# throughput against the HF peer. The 2026-11-26 call gave rr's two 0.5B runs 60 s each, too little: 150 s here. Carry .whl/ (ml_collections, tensorboardX wheels) and .gpu/ (hf_peer.py).
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
timeout 130 python3 -m pytest -q -p no:cacheprovider tests/test_hf_run.py tests/test_precision.py > $OUT/tests.txt 2>&1
tail -4 $OUT/tests.txt
for args in "--remat none" "--remat full"; do
  timeout 150 python3 benchmarks/memory_check.py --preset qwen2-0.5b --batch 8 --seq 1024 --dtype bfloat16 $args 2>>$OUT/stderr.txt | tee -a $OUT/memory.jsonl
done
timeout 70 python3 .gpu/hf_peer.py --size qwen0.5b --what train --dtype bfloat16 --train-batch 8 --seq 2048 2>>$OUT/stderr.txt | tee -a $OUT/train.jsonl
timeout 150 python3 benchmarks/train_step.py --size qwen0.5b --dtype bfloat16 --batch 8 --seq 2048 --remat full 2>>$OUT/stderr.txt | tee -a $OUT/train.jsonl
