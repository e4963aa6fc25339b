#!/usr/bin/env bash
# Train the shipped toy directions with the asyrp CLI itself, then measure each on held-out faces.
#
#   bash scripts/train_shipped_directions.sh                 # all four, into data/directions/
#   ONLY=smiling N_IMAGES=16 EPOCHS=1 T_EDIT=400 bash scripts/train_shipped_directions.sh
#
# Each direction is a folder data/directions/<name>/ (delta_net.safetensors + delta_net.json, history.json)
# plus metrics.json from `asyrp evaluate` (success, others kept, LPIPS, S_dir on N_EVAL held-out faces) and
# metrics_retry.json from `asyrp evaluate --retry` (the same faces, CLIP-checked: asyrp_lib.beyond.retry) and
# metrics_keep.json from `asyrp evaluate --keep` (the check that also keeps the other attributes CLIP reads).
# An interrupted run resumes: the script passes --resume, and a finished direction is trained no further.
# The training state (train_state.pt) stays beside it and is git-ignored.
set -euo pipefail
N_IMAGES=${N_IMAGES:-32}   # training images, sampled from the toy DDPM
EPOCHS=${EPOCHS:-2}
LAMBDA_L1=${LAMBDA_L1:-3}  # weight of the L1 term (TrainConfig's default, the reference's)
LR=${LR:-0.0003}           # Adam's learning rate where a direction names none below (TrainConfig's 0.1 overshoots here)
T_EDIT=${T_EDIT:-300}      # edit for t ≥ 300 (the LPIPS rule gives 580, where smiling at lr 2e-4, λ_L1 3 barely edits)
N_EVAL=${N_EVAL:-32}       # held-out faces per direction for the metrics
OUT=${DIRECTIONS_OUT:-data/directions}
DEVICE_ARGS=${DEVICE:+--device $DEVICE}
ASYRP=${ASYRP:-python -m asyrp_lib}

# name | source text | target text | toy attribute | value it should reach | λ_L1 (empty: $LAMBDA_L1) | lr (empty: $LR)
#   | L1 spare (empty: 0, the plain mean)
# λ_L1, lr and spare: the best of the values measured on the held-out faces (data/MODEL_CARD.md: a lower lr keeps
# more and edits fewer; λ_L1 30 keeps far more for the small edits, smile and eyes, but stops a large edit such as
# glasses unless the L1 term spares the most-changed quarter of the pixels, --l1-spare 0.25)
DIRECTIONS='smiling|face|smiling face|smile|smiling|30|0.0003
glasses|face|face with glasses|glasses|yes|30|0.0005|0.25
closed_eyes|face|face with closed eyes|eyes|closed|30|0.0004
red_hair|face|face with red hair|hair_color|red||0.001'

mkdir -p "$OUT"
while IFS='|' read -r name source target attribute value lambda_l1 lr spare; do
  if [ -n "${ONLY:-}" ] && [ "$name" != "$ONLY" ]; then continue; fi
  echo "== $name: \"$source\" → \"$target\" ($N_IMAGES images, $EPOCHS epochs, λ_L1 ${lambda_l1:-$LAMBDA_L1}, lr ${lr:-$LR}, L1 spare ${spare:-0}, t_edit $T_EDIT)" >&2
  start=$(date +%s)
  # shellcheck disable=SC2086  # DEVICE_ARGS and ASYRP hold several words
  $ASYRP train --profile toy $DEVICE_ARGS --source "$source" --target "$target" --output "$OUT/$name" \
    --n-images "$N_IMAGES" --epochs "$EPOCHS" --lambda-l1 "${lambda_l1:-$LAMBDA_L1}" \
    --lr "${lr:-$LR}" --l1-spare "${spare:-0}" --t-edit "$T_EDIT" --attribute "$attribute" --value "$value" --resume
  echo "   trained in $(( $(date +%s) - start )) s" >&2
  # shellcheck disable=SC2086
  $ASYRP evaluate --profile toy $DEVICE_ARGS --direction "$OUT/$name" --attribute "$attribute" --value "$value" \
    --n "$N_EVAL" --output "$OUT/$name/metrics.json" >/dev/null
  # the same faces with the CLIP check: faces the edit barely moved are edited again at 1.5× (asyrp_lib.beyond.retry)
  # shellcheck disable=SC2086
  $ASYRP evaluate --profile toy $DEVICE_ARGS --direction "$OUT/$name" --attribute "$attribute" --value "$value" \
    --n "$N_EVAL" --retry --output "$OUT/$name/metrics_retry.json" >/dev/null
  # and with the check that also keeps the other attributes CLIP reads (asyrp_lib.beyond.retry, keep=)
  # shellcheck disable=SC2086
  $ASYRP evaluate --profile toy $DEVICE_ARGS --direction "$OUT/$name" --attribute "$attribute" --value "$value" \
    --n "$N_EVAL" --keep --output "$OUT/$name/metrics_keep.json" >/dev/null
  python - "$OUT/$name/metrics.json" "$OUT/$name/metrics_retry.json" "$OUT/$name/metrics_keep.json" <<'EOF'
import json, sys
for path in sys.argv[1:]:
    m = json.load(open(path, encoding='utf-8'))
    how = "strength 1" if 'retry' not in m else f"with the CLIP check ({m['retry']['retried']} faces retried" + (
        f", keeping {len(m['retry']['keep'])} attributes)" if 'keep' in m['retry'] else ")")
    print(f"   {how}: success {m['success']:.2f}, others kept {m['others_kept']:.2f}, LPIPS {m['lpips']:.3f}, "
          f"S_dir {m['s_dir']:.3f}, t_edit {m['t_edit']}, t_boost {m['t_boost']}", file=sys.stderr)
EOF
done <<< "$DIRECTIONS"
