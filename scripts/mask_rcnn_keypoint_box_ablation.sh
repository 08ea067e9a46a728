#!/usr/bin/env bash
# The keypoint head on the box against the box enlarged 1.5x (MaskRCNN keypoint_box_scale, docs/decisions.md), one
# command: bash scripts/mask_rcnn_keypoint_box_ablation.sh
# The same compact Mask R-CNN (ResNet-18 FPN trunk from the released RetinaNet) trained twice at one budget, once
# with keypoint_box_scale 1 (mask-rcnn-compact, the paper's head) and once with 1.5, then evaluated on 500 test
# images; prints the keypoint AP (OKS, the stars' five tips) beside box and mask AP as a markdown table. Runs resume:
# an interrupted training goes on from its last checkpoint when the script is started again.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
KERASDET=${KERASDET:-.venv/bin/kerasdet}
BUDGET=(--dataset synthetic --train-images 4000 --epochs 3 --batch-size 8 --lr 0.0006 --warmup 200 --seed 5
        --backbone-from retinanet_resnet18_shapes)
declare -A ARCH=([box]=mask-rcnn-compact [box_1.5]=mask-rcnn-compact-keypoint-box-1.5)
for name in box box_1.5; do
  run=runs/ablation_keypoint_${name}
  if [ ! -f "$run/model.json" ]; then
    if [ -f "$run/command.json" ]; then
      "$KERASDET" train --resume "$run"
    else
      "$KERASDET" train --arch "${ARCH[$name]}" "${BUDGET[@]}" --out "$run"
    fi
  fi
  if [ ! -f "out/ablation_keypoint/${name}/metrics.json" ]; then
    "$KERASDET" evaluate --model "$run" --dataset synthetic:test --images 500 --out "out/ablation_keypoint/${name}"
  fi
done
.venv/bin/python - <<'PY'
import json
print("| keypoint head on | keypoint AP | AP50 | AP75 | mask AP | box AP |")
print("|---|---|---|---|---|---|")
for name, label in (("box", "the box (scale 1)"), ("box_1.5", "the box enlarged 1.5x")):
    m = json.load(open(f"out/ablation_keypoint/{name}/metrics.json"))
    k, s, b = m["keypoint_metrics"], m["segm_metrics"], m["metrics"]
    print(f"| {label} | {k['AP']:.3f} | {k['AP50']:.3f} | {k['AP75']:.3f} | {s['AP']:.3f} | {b['AP']:.3f} |")
PY
