"""How many labelled keypoints of the embedded dataset lie outside their object's box, and how much the box must be
enlarged about its centre to hold them (the keypoint head's `keypoint_box_scale`, docs/decisions.md).

    .venv/bin/python scripts/keypoints_outside_boxes.py --images 400 --seed 777
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from kerasdet.data import synthetic  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--seed", type=int, default=777)
    parser.add_argument("--image-size", type=int, default=256)
    args = parser.parse_args(argv)
    labelled = occluded = 0
    needed = []  # per outside keypoint: the smallest scale of its box that holds it
    for i in range(args.images):
        target = synthetic.render(i, args.image_size, args.seed)[1]
        for (x1, y1, x2, y2), points in zip(target["boxes"], target["keypoints"]):
            cx, cy, half_w, half_h = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
            for x, y, v in points:
                if v <= 0:
                    continue
                labelled += 1
                occluded += v == 1
                if not (x1 <= x <= x2 and y1 <= y <= y2):
                    needed.append(max(abs(x - cx) / half_w, abs(y - cy) / half_h))
    needed = np.asarray(needed)
    print(f"{labelled} labelled keypoints, {occluded} occluded, {len(needed)} outside their box")
    if len(needed):
        q = np.percentile(needed, [50, 75, 90, 100])
        print("box scale that holds them: median {:.2f}, 75% {:.2f}, 90% {:.2f}, all {:.2f}".format(*q))
        for scale in (1.25, 1.5, 2.0):
            print(f"scale {scale}: holds {np.mean(needed <= scale):.3f} of them")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
