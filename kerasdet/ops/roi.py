"""RoI feature extraction ops (DESIGN.md §4): RoIPool, RoIAlign, PS-RoI pooling / align, SPP.

All take channels-last features `[B, H, W, C]` and rois `[B, R, 4]` xyxy in input-image pixels (rows
of -1 are padding and give zeros) and return `[B, R, ph, pw, C]` (`spatial_pyramid_pool`:
`[B, R, sum(l*l) * C]`). The quantised ops live in `_roi_pool.py`, the bilinear ones in `_roi_align.py`.
"""

from kerasdet.ops._roi_align import assign_fpn_levels, multilevel_roi_align, ps_roi_align, roi_align
from kerasdet.ops._roi_pool import ps_roi_pool, roi_pool, spatial_pyramid_pool

__all__ = [
    "roi_pool",
    "roi_align",
    "ps_roi_pool",
    "ps_roi_align",
    "spatial_pyramid_pool",
    "multilevel_roi_align",
    "assign_fpn_levels",
]
