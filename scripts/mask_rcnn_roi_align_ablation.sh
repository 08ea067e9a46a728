#!/usr/bin/env bash
# Mask R-CNN's RoIAlign claim (He et al., 2017, Table 2c) on the embedded dataset, one command:
#   bash scripts/mask_rcnn_roi_align_ablation.sh
# The same compact Mask R-CNN (ResNet-18 FPN trunk from the released RetinaNet; boxes and masks pooled from the
# stride-16 map P4 alone) trained twice at one budget, once with RoIAlign and once with RoIPool, then evaluated on
# 500 test images; prints the mask (and box) AP, AP50 and AP75 of both as a markdown table. Runs resume: an
# interrupted training goes on from its last epoch when the script is started again.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
KERASDET=.venv/bin/kerasdet
BUDGET=(--dataset synthetic --train-images 4000 --epochs 3 --batch-size 8 --lr 0.0006 --warmup 200 --seed 5)
for pooler in roialign roipool; do
  run=runs/ablation_mask_rcnn_p4_${pooler}
  if [ ! -f "$run/model.json" ]; then
    if [ -f "$run/command.json" ]; then
      "$KERASDET" train --resume "$run"
    else
      "$KERASDET" train --arch "mask-rcnn-compact-p4-${pooler}" --backbone-from retinanet_resnet18_shapes \
        "${BUDGET[@]}" --out "$run"
    fi
  fi
  "$KERASDET" evaluate --model "$run" --dataset synthetic:test --images 500 --out "out/ablation_roi_align/${pooler}"
done
.venv/bin/python - <<'PY'
import json
rows = []
for pooler, label in (("roialign", "RoIAlign"), ("roipool", "RoIPool")):
    m = json.load(open(f"out/ablation_roi_align/{pooler}/metrics.json"))
    s, b = m["segm_metrics"], m["metrics"]
    rows.append(f"| {label} | {s['AP']:.3f} | {s['AP50']:.3f} | {s['AP75']:.3f} | {b['AP']:.3f} | {b['AP50']:.3f} | {b['AP75']:.3f} |")
print("| pooling (P4, stride 16) | mask AP | mask AP50 | mask AP75 | box AP | box AP50 | box AP75 |")
print("|---|---|---|---|---|---|---|")
print("\n".join(rows))
PY
