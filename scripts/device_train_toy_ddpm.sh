#!/usr/bin/env bash
# Train and evaluate the toy DDPM on a lent GPU machine, in one command (about 7 minutes on one H100).
#
# Prepare on the CPU machine, in the repository root (both folders are git-ignored; together ≈ 16 MB):
#   python -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 -d .whl diffusers importlib_metadata lazy-importer lpips
#   python -c "from asyrp_lib.models.perceptual import load_lpips; load_lpips('alex')"   # fills the LPIPS cache
#   mkdir -p .lpips-cache/lpips && cp ~/.cache/asyrp/lpips/alex_* .lpips-cache/lpips/
# then run `bash scripts/device_train_toy_ddpm.sh` there with `.whl` and `.lpips-cache` carried. It writes
# the EMA weights every SAVE_EVERY seconds while training (so a run cut short still returns them), then
# metrics.json and samples.png, to $OUT/toy_ddpm; copy that folder to data/toy_ddpm and update
# data/MODEL_CARD.md. The learning rate follows the time limit, so LIMIT alone sets the run's length.
#
# The same script runs on a CPU for a smoke test:
#   DEVICE=cpu LIMIT=20 BATCH=4 POOL=256 EVAL="--eval-samples 8 --eval-inversions 4" OUT=/tmp/o \
#       bash scripts/device_train_toy_ddpm.sh
set -euo pipefail
DEVICE=${DEVICE:-cuda}
LIMIT=${LIMIT:-330}        # seconds of training; evaluation adds about a minute
BATCH=${BATCH:-128}
POOL=${POOL:-60000}
SAVE_EVERY=${SAVE_EVERY:-60}
EVAL=${EVAL:-}
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD PYTHONUNBUFFERED=1
[ -d .lpips-cache ] && export ASYRP_CACHE=$PWD/.lpips-cache
if [ "$DEVICE" = cuda ]; then nvidia-smi --query-gpu=name,memory.total --format=csv || true; fi
out=${OUT:-/tmp/out}/toy_ddpm
# shellcheck disable=SC2086  # EVAL holds several arguments
python3 scripts/train_toy_ddpm.py --device "$DEVICE" --steps 1000000 --batch "$BATCH" --pool "$POOL" \
  --time-limit "$LIMIT" --save-every "$SAVE_EVERY" --out "$out" $EVAL 2>&1 | tr '\r' '\n' | grep -v 'it/s' | tail -n 60
ls -la "$out"
