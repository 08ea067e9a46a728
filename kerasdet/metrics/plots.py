"""Precision-recall curves of an evaluation, drawn to PNG with matplotlib (no pyplot, no display needed).

`plot_precision_recall` takes the dict returned by `kerasdet.metrics.coco.coco_evaluate` (the
interpolated COCO curves: precision at 101 recall points, per IoU threshold and class) or by
`kerasdet.metrics.voc.voc_evaluate` (the raw ranked curve of every class) and writes one figure: a large
"all classes" panel first, then one small panel per class with its AP in the title.

Example:
    >>> stats = coco_evaluate(gt, dets)
    >>> plot_precision_recall(stats, "pr.png")              # overall + every class
    >>> plot_precision_recall(stats, "pr_all.png", per_class=False)
"""

from __future__ import annotations

import math
import os

import numpy as np
from matplotlib.figure import Figure

_COCO_CURVES = ((0.5, "IoU=0.50", "tab:blue"), (0.75, "IoU=0.75", "tab:orange"), (None, "IoU=0.50:0.95", "tab:green"))


def plot_precision_recall(
    stats: dict,
    path,
    per_class: bool = True,
    classes=None,
    area: str = "all",
    title: str | None = None,
    dpi: int = 100,
) -> str:
    """Writes precision-recall curves to a PNG file.

    Args:
        stats: output of `coco_evaluate` or `voc_evaluate`.
        path: file to write (".png").
        per_class: add one panel per class after the overall panel.
        classes: optional subset of classes to draw (COCO category ids or VOC labels; default all that
            have ground truth).
        area: COCO area range of the curves ("all", "small", "medium", "large").
        title: figure title (default: what was evaluated and its main number).
        dpi: resolution.

    Returns:
        the path written.
    """
    if not isinstance(stats, dict):
        raise TypeError(f"`stats` must be the dict of coco_evaluate or voc_evaluate; got {type(stats).__name__}")
    if "precision" in stats and "recall_thresholds" in stats:
        panels = _coco_panels(stats, classes, area)
        main = f"COCO AP={stats['AP']:.3f}  AP50={stats['AP50']:.3f}"
    elif "mAP" in stats and "per_class" in stats:
        panels = _voc_panels(stats, classes)
        main = f"VOC mAP={stats['mAP']:.3f}"
    else:
        raise ValueError(
            "`stats` must come from coco_evaluate (has 'precision', 'recall_thresholds') or voc_evaluate ('mAP')"
        )
    if not per_class:
        panels = panels[:1]
    fig = _draw(panels, title or main, _summary_text(stats))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=dpi, format="png")
    return str(path)


def _mean_defined(p: np.ndarray, axis) -> np.ndarray:
    defined = p > -1
    count = defined.sum(axis=axis)
    total = np.where(defined, p, 0.0).sum(axis=axis)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _coco_panels(stats: dict, classes, area: str) -> list:
    """[(title, [(recall, precision, label, color)])], overall first."""
    areas = stats["area_ranges"]
    if area not in areas:
        raise ValueError(f"`area` must be one of {areas}; got {area!r}")
    p = stats["precision"][:, :, :, areas.index(area), -1]  # [T, R, K]
    rec = stats["recall_thresholds"]
    ious = stats["iou_thresholds"]
    ids = stats["category_ids"]
    keep = [k for k, cid in enumerate(ids) if (classes is None or cid in classes) and (p[:, :, k] > -1).any()]

    def curves(sel):
        out = []
        for iou, label, color in _COCO_CURVES:
            q = p[:, :, sel] if iou is None else p[np.flatnonzero(np.isclose(ious, iou)), :, :][:, :, sel]
            y = _mean_defined(q.transpose(1, 0, 2).reshape(len(rec), -1), axis=1)
            ap = float(np.nanmean(y)) if np.isfinite(y).any() else float("nan")
            out.append((rec, y, f"{label}  AP={ap:.3f}", color, "steps-post"))
        return out

    panels = [(f"all classes ({len(keep)}), area={area}", curves(keep))] if keep else [("no ground truth", [])]
    by_id = {r["category_id"]: r for r in stats.get("per_class", [])}
    for k in keep:
        row = by_id.get(ids[k], {"name": str(ids[k]), "AP": float("nan")})
        panels.append((f"{row['name']}  AP={row['AP']:.3f}", curves([k])))
    return panels


def _voc_panels(stats: dict, classes) -> list:
    """Per class: the precision envelope that AP integrates (solid) over the raw ranked curve (faint)."""
    rows = [r for r in stats["per_class"] if r["AP"] > -1 and (classes is None or r["label"] in classes)]
    colors = _palette(len(rows))
    overall, per = [], []
    for color, r in zip(colors, rows):
        rc, pr = stats["recall"][r["label"]], stats["precision"][r["label"]]
        env = np.maximum.accumulate(pr[::-1])[::-1] if len(pr) else pr
        envelope = (np.r_[0.0, rc], np.r_[env[:1], env], r["name"], color, "steps-pre")
        raw = (rc, pr, None, color, "faint")
        overall.append(envelope)
        per.append((f"{r['name']}  AP={r['AP']:.3f}", [raw, envelope]))
    return [(f"all classes ({len(rows)})", overall)] + per


def _palette(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _summary_text(stats: dict) -> str:
    """The headline numbers, one per line, for the space beside the overall panel."""
    if "mAP" in stats:
        lines = [f"mAP    {stats['mAP']:.3f}", ""]
        rows = sorted((r for r in stats["per_class"] if r["AP"] > -1), key=lambda r: -r["AP"])
        lines += [f"{r['name'][:18]:<18s} {r['AP']:.3f}" for r in rows[:12]]
        if len(rows) > 12:
            lines.append(f"... ({len(rows) - 12} more below)")
        lines += ["", "per class: the precision envelope", "(what AP integrates) over the", "raw ranked curve (faint)"]
        return "\n".join(lines)
    keys = [k for k in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl",
                        "AR", "AR50", "AR75") if k in stats]
    lines = [f"{k:<6s} {stats[k]:7.3f}" for k in keys]
    lines += ["", "per class: colours as in the overall", "panel; titles give AP@[.50:.95]"]
    return "\n".join(lines)


def _draw(panels: list, title: str, summary: str) -> Figure:
    n_small = len(panels) - 1
    if n_small == 0:
        fig = Figure(figsize=(9.0, 5.6), layout="constrained")
        grid = fig.add_gridspec(1, 3)
        _panel(fig.add_subplot(grid[0, :2]), *panels[0], legend=True)
        _text(fig.add_subplot(grid[0, 2]), summary)
        fig.suptitle(title, fontsize=13)
        return fig
    cols = max(4, math.ceil(math.sqrt(n_small + 6)))
    rows_small = math.ceil(n_small / cols)
    big = max(2, cols // 2)
    fig = Figure(figsize=(2.6 * cols, 2.6 * (rows_small + 2) + 0.6), layout="constrained")
    grid = fig.add_gridspec(rows_small + 2, cols)
    _panel(fig.add_subplot(grid[:2, :big]), *panels[0], legend=True)
    _text(fig.add_subplot(grid[:2, big:]), summary)
    for i, panel in enumerate(panels[1:]):
        r, c = divmod(i, cols)
        _panel(fig.add_subplot(grid[r + 2, c]), *panel, legend=False, small=True)
    fig.suptitle(title, fontsize=14)
    return fig


def _text(ax, text: str) -> None:
    ax.axis("off")
    ax.text(0.05, 0.95, text, transform=ax.transAxes, va="top", ha="left", family="monospace", fontsize=10)


def _panel(ax, title: str, curves: list, legend: bool, small: bool = False) -> None:
    for rc, pr, label, color, style in curves:
        if style == "faint":
            ax.plot(rc, pr, color=color, alpha=0.35, linewidth=0.8)
        else:
            ax.plot(rc, pr, label=label, color=color, linewidth=1.2 if small else 1.8, drawstyle=style)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title(title, fontsize=9 if small else 11)
    ax.grid(True, alpha=0.3)
    if small:
        ax.tick_params(labelsize=7)
    else:
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
    if legend and curves:
        ax.legend(loc="upper right", fontsize=8 if len(curves) > 6 else 9, ncol=2 if len(curves) > 10 else 1)
