#!/usr/bin/env bash
# Train and evaluate the toy DDPM on a lent GPU machine, in one command (≈ 8 minutes on one H100).
#
# Prepare on the CPU machine, in the repository root (the two folders are git-ignored):
#   python -m pip download --no-deps --only-binary=:all: -d .whl diffusers importlib_metadata lpips
#   python -c "from asyrp_lib.perceptual import load_lpips; load_lpips('alex')"   # fills the LPIPS cache
#   mkdir -p .lpips-cache && cp -r ~/.cache/asyrp/lpips .lpips-cache/
# then run this script there with `.whl` and `.lpips-cache` carried; it writes the weights, metrics
# and a sample grid to $OUT/toy_ddpm (copy that folder to data/toy_ddpm and update data/MODEL_CARD.md).
set -euo pipefail
STEPS=${STEPS:-12000}
LIMIT=${LIMIT:-420}   # seconds of training at most, so evaluation fits in the same call
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD ASYRP_CACHE=$PWD/.lpips-cache PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv
out=${OUT:-/tmp/out}/toy_ddpm
python3 scripts/train_toy_ddpm.py --device cuda --steps "$STEPS" --batch 128 --time-limit "$LIMIT" --out "$out" \
  2>&1 | tr '\r' '\n' | grep -v 'it/s]$' | tail -n 60
ls -la "$out"
