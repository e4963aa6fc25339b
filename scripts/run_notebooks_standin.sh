#!/usr/bin/env bash
# Run the notebooks under nbval in the celebahq code path at reduced size, offline, on a CPU.
#
# The models are random-weight stand-ins written by scripts/make_celebahq_standin.py: the real CelebA-HQ
# U-Net architecture at 64×64 (h is 512×2×2) and a small random CLIP, loaded as a local-folder profile
# (ASYRP_PROFILE=<folder>/unet, ASYRP_CLIP=<folder>/clip) with ASYRP_STEPS DDIM steps. This checks that
# every cell runs outside the toy world (faces sampled from the profile's model, toy-only cells skipped);
# random weights sample noise, so it checks code paths, not results. nbval never writes into the
# notebooks; its options (--nbval-lax, the cell timeout …) come from pyproject.toml.
#
#   scripts/run_notebooks_standin.sh                         # every notebook
#   scripts/run_notebooks_standin.sh notebooks/02_directional_clip.ipynb [more notebooks or pytest options]
#
# Environment: STANDIN_DIR (default: a temporary folder, removed afterwards; an existing stand-in there is
# reused), ASYRP_STEPS (default 4), PYTHON (default: .venv/bin/python when it exists, else python).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python; fi
fi
if [[ -n "${STANDIN_DIR:-}" ]]; then
    standin="$STANDIN_DIR"
else
    standin="$(mktemp -d)"
    trap 'rm -rf "$standin"' EXIT
fi
if [[ ! -f "$standin/unet/config.json" || ! -f "$standin/clip/config.json" ]]; then
    "$PYTHON" scripts/make_celebahq_standin.py "$standin" --sample-size 64 --no-hub-cache
fi

[[ $# -gt 0 ]] || set -- notebooks/
export ASYRP_PROFILE="$standin/unet" ASYRP_CLIP="$standin/clip" ASYRP_STEPS="${ASYRP_STEPS:-4}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MPLBACKEND=Agg
exec "$PYTHON" -m pytest -p no:cacheprovider "$@"
