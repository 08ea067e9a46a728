"""COCO matching and precision/recall accumulation, vectorised across images and categories.

This reproduces `pycocotools.cocoeval.COCOeval.evaluate` + `accumulate` exactly, without their loops over
(image, category, area range) triples:

- Detections of one (image, category) are ranked by score (stable: ties keep their input order) and
  only the first `max(max_dets)` are kept.
- Matching is greedy in rank order, per IoU threshold `t` and per area range: a detection takes, among the
  ground truths not taken yet (crowds can be taken again) whose similarity is >= t, the one with the largest
  similarity (the later one in input order on ties), preferring ground truths that are not ignored; it
  takes an ignored one only when no regular one qualifies. Detections are processed in "rounds": round r
  holds the r-th competing detection of every (image, category) at once, so the Python loop runs over
  ranks (at most `max_dets`), never over images.
- A detection matched to an ignored ground truth, or unmatched and outside the area range, is ignored.
- Precision at recall r is the running maximum of precision from the first detection reaching recall r;
  -1 marks a (category, area) without regular ground truth.

Only true positives change precision upward, so the curve is built from the true positives of each
(threshold, category, area) alone: precision at the j-th true positive is j / (j + false positives before
it). The false positives before each true positive are counted with cumulative sums; those of detections
that never match anything (the vast majority) only depend on the area range, not on the threshold.
"""

from __future__ import annotations

import numpy as np

_EPS = np.spacing(1)


def rank_detections(group: np.ndarray, score: np.ndarray, max_det: int):
    """Order of detections by (group, score descending, input order) and each one's rank in its group.

    Returns:
        (order, rank) with `rank[i]` the rank of detection `order[i]`; only ranks < max_det are returned.
    """
    order = np.lexsort((-score, group))
    g = group[order]
    new = np.r_[True, g[1:] != g[:-1]] if len(g) else np.zeros(0, bool)
    first = np.maximum.accumulate(np.where(new, np.arange(len(g)), 0)) if len(g) else np.zeros(0, np.int64)
    rank = np.arange(len(g)) - first
    keep = rank < max_det
    return order[keep], rank[keep]


def candidate_pairs(dt_group: np.ndarray, gt_group_sorted: np.ndarray):
    """All (detection, ground truth) pairs of the same group.

    Args:
        dt_group: `[D]` group of each (ranked) detection.
        gt_group_sorted: `[G]` group of each ground truth, sorted (stable, input order within a group).

    Returns:
        (detection index, ground-truth index), ordered by detection then ground truth.
    """
    lo = np.searchsorted(gt_group_sorted, dt_group, side="left")
    hi = np.searchsorted(gt_group_sorted, dt_group, side="right")
    count = hi - lo
    det = np.repeat(np.arange(len(dt_group)), count)
    offsets = np.cumsum(count) - count
    gt = lo[det] + np.arange(int(count.sum())) - offsets[det]
    return det, gt


def greedy_match(
    pair_dt: np.ndarray,
    pair_gt: np.ndarray,
    pair_sim: np.ndarray,
    dt_group: np.ndarray,
    gt_ignore: np.ndarray,
    gt_crowd: np.ndarray,
    thresholds: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy COCO matching of ranked detections for every area range and threshold.

    Args:
        pair_dt, pair_gt, pair_sim: candidate pairs (detections in processing order: a lower index goes
            first within its group) and their IoU/OKS; pairs below every threshold may be left out.
        dt_group: `[D]` group of each detection.
        gt_ignore: `[A, G]` ignore flags per area range.
        gt_crowd: `[G]` crowd flags (a crowd can match any number of detections).
        thresholds: `[T]` IoU thresholds.

    Returns:
        (candidates, match): the detections with a pair above the lowest threshold (sorted), and for
        them `[A, T, len(candidates)]` the index of the matched ground truth, -1 when unmatched. Every
        other detection is unmatched.
    """
    num_a, num_t = gt_ignore.shape[0], len(thresholds)
    thr = np.minimum(np.asarray(thresholds, np.float64), 1 - 1e-10)  # as pycocotools
    keep = pair_sim >= thr.min() if len(thr) else np.zeros(len(pair_sim), bool)
    pair_dt, pair_gt, pair_sim = pair_dt[keep], pair_gt[keep], pair_sim[keep]
    cand = np.unique(pair_dt)
    match = np.full((num_a, num_t, len(cand)), -1, np.int64)
    if len(cand) == 0:
        return cand, match
    pair_dt = np.searchsorted(cand, pair_dt)  # from here on, detections are numbered among the candidates
    # round of a detection: its rank among the detections of its group that have a candidate
    g = dt_group[cand]
    new = np.r_[True, g[1:] != g[:-1]]
    round_of_cand = np.arange(len(cand)) - np.maximum.accumulate(np.where(new, np.arange(len(cand)), 0))
    pair_round = round_of_cand[pair_dt]
    order = np.lexsort((pair_gt, pair_sim, pair_dt, pair_round))
    pair_dt, pair_gt, pair_sim, pair_round = pair_dt[order], pair_gt[order], pair_sim[order], pair_round[order]
    bounds = np.searchsorted(pair_round, np.arange(int(pair_round[-1]) + 2))
    taken = np.zeros((num_a, num_t, gt_ignore.shape[1]), bool)
    for r in range(len(bounds) - 1):
        sl = slice(bounds[r], bounds[r + 1])
        pd, pg, ps = pair_dt[sl], pair_gt[sl], pair_sim[sl]
        seg = np.flatnonzero(np.r_[True, pd[1:] != pd[:-1]])
        ok = (ps[None, None, :] >= thr[None, :, None]) & (gt_crowd[pg] | ~taken[:, :, pg])
        ign = gt_ignore[:, pg][:, None, :]
        local = np.arange(len(pd))
        best_regular = np.maximum.reduceat(np.where(ok & ~ign, local, -1), seg, axis=2)
        best_ignored = np.maximum.reduceat(np.where(ok & ign, local, -1), seg, axis=2)
        best = np.where(best_regular >= 0, best_regular, best_ignored)
        a, t, s = np.nonzero(best >= 0)
        gt = pg[best[a, t, s]]
        match[a, t, pd[seg[s]]] = gt
        taken[a, t, gt] = True
    return cand, match


def _suffix_max_by_row(values: np.ndarray, row: np.ndarray, num_rows: int) -> np.ndarray:
    """max(values[i:end of i's row]) for entries grouped by row; exact (done on value ranks)."""
    if len(values) == 0:
        return values.copy()
    uniq, rank = np.unique(values, return_inverse=True)
    offset = (num_rows - 1 - row).astype(np.int64) * len(uniq)  # rows further back get larger offsets
    key = (offset + rank)[::-1]
    best = np.maximum.accumulate(key)[::-1] - offset
    return uniq[best]


def recall_steps(npig: int, rec_thrs: np.ndarray) -> np.ndarray:
    """Smallest true-positive count j with j / npig >= each recall threshold (pycocotools' searchsorted)."""
    return np.searchsorted(np.arange(npig + 1) / npig, rec_thrs, side="left")


def accumulate(
    candidates: np.ndarray,
    match: np.ndarray,
    dt_category: np.ndarray,
    dt_image: np.ndarray,
    dt_rank: np.ndarray,
    dt_score: np.ndarray,
    dt_outside: np.ndarray,
    gt_category: np.ndarray,
    gt_ignore: np.ndarray,
    gt_id_is_zero: np.ndarray,
    num_categories: int,
    max_dets,
    rec_thrs: np.ndarray,
):
    """Precision `[T, R, K, A, M]` and recall `[T, K, A, M]` as `COCOeval.accumulate` (-1 where undefined).

    Args:
        candidates, match: from `greedy_match` (matches of the candidate detections, `[A, T, C]`).
        dt_category, dt_image, dt_rank, dt_score: `[D]` per detection.
        dt_outside: `[A, D]` detection area outside the area range.
        gt_category: `[G]`; gt_ignore `[A, G]`; gt_id_is_zero `[G]`.
    """
    num_a, num_t = dt_outside.shape[0], match.shape[1]
    num_k, num_m, num_r = num_categories, len(max_dets), len(rec_thrs)
    precision = -np.ones((num_t, num_r, num_k, num_a, num_m))
    recall = -np.ones((num_t, num_k, num_a, num_m))
    npig = np.stack([np.bincount(gt_category[~gt_ignore[a]], minlength=num_k) for a in range(num_a)], axis=1)
    has_gt = npig > 0  # [K, A]
    steps = np.zeros((num_k, num_a, num_r), np.int64)
    for k, a in zip(*np.nonzero(has_gt)):
        steps[k, a] = recall_steps(int(npig[k, a]), rec_thrs)
    steps = np.maximum(steps, 1)  # recall 0 reads the precision at the first true positive
    # "special" detections: matched for some area range and threshold; the others are plain false
    # positives wherever their area is inside the range
    matched = match >= 0
    some = matched.any(axis=(0, 1))
    special, match, matched = candidates[some], match[:, :, some], matched[:, :, some]
    num_g = gt_ignore.shape[1]
    safe = np.where(matched, match, num_g)  # a padding ground truth for the unmatched
    pad_ignore = np.concatenate([gt_ignore, np.zeros((num_a, 1), bool)], axis=1)
    hit = matched & ~np.r_[gt_id_is_zero, False][safe]  # pycocotools stores gt ids: id 0 reads as no match
    outside = dt_outside[:, special][:, None, :]
    ignored = (matched & pad_ignore[np.arange(num_a)[:, None, None], safe]) | (~hit & outside)
    tp, fp = hit & ~ignored, ~hit & ~ignored  # [A, T, S]
    slot = np.full(len(dt_category), -1)
    slot[special] = np.arange(len(special))
    order = np.lexsort((dt_rank, dt_image, -dt_score, dt_category))
    for m, max_det in enumerate(max_dets):
        sel = order[dt_rank[order] < max_det]
        p, r = _curves(sel, dt_category[sel], slot, tp, fp, dt_outside, npig, steps, num_k)
        precision[:, :, :, :, m] = np.where(has_gt[None, None], p.transpose(1, 3, 2, 0), -1)
        recall[:, :, :, m] = np.where(has_gt[None], r.transpose(1, 2, 0), -1)
    return precision, recall


def _curves(sel, cat, slot, tp, fp, dt_outside, npig, steps, num_k):
    """Precision `[A, T, K, R]` and recall `[A, T, K]` for detections `sel` in evaluation order."""
    num_a, num_t = tp.shape[:2]
    num_r = steps.shape[-1]
    cat_first = np.minimum(np.searchsorted(cat, np.arange(num_k)), max(len(sel) - 1, 0))
    is_special = slot[sel] >= 0
    # false positives among detections that never match anything: they depend on the area range only
    plain_fp = ~is_special[None, :] & ~dt_outside[:, sel]  # [A, N]
    plain_before = np.cumsum(plain_fp, axis=1) - plain_fp
    plain_base = plain_before[:, cat_first] if len(sel) else np.zeros((num_a, num_k), np.int64)
    # the rest: matched somewhere; their state depends on the threshold
    sp_pos = np.flatnonzero(is_special)
    sp_cat = cat[sp_pos]
    tp_s, fp_s = tp[:, :, slot[sel[sp_pos]]], fp[:, :, slot[sel[sp_pos]]]
    fp_before = np.cumsum(fp_s, axis=2) - fp_s
    tp_upto = np.cumsum(tp_s, axis=2)
    sp_first = np.minimum(np.searchsorted(sp_cat, np.arange(num_k)), max(len(sp_pos) - 1, 0))
    zeros = np.zeros((num_a, num_t, num_k), np.int64)
    fp_base = fp_before[:, :, sp_first] if len(sp_pos) else zeros
    tp_base = (tp_upto - tp_s)[:, :, sp_first] if len(sp_pos) else zeros
    a, t, s = np.nonzero(tp_s)  # true positives, by (area, threshold) then evaluation order
    k = sp_cat[s]
    j = (tp_upto[a, t, s] - tp_base[a, t, k]).astype(np.float64)
    fps = (plain_before[a, sp_pos[s]] - plain_base[a, k] + fp_before[a, t, s] - fp_base[a, t, k]).astype(np.float64)
    pr = j / (fps + j + _EPS)
    row = (a * num_t + t) * num_k + k
    num_rows = num_a * num_t * num_k
    envelope = _suffix_max_by_row(pr, row, num_rows)
    n_tp = np.bincount(row, minlength=num_rows)
    row_start = np.cumsum(n_tp) - n_tp
    n_tp = n_tp.reshape(num_a, num_t, num_k)
    recall = n_tp / np.maximum(npig.T[:, None, :], 1)
    need = steps.transpose(1, 0, 2)[:, None, :, :]  # [A, 1, K, R]
    idx = row_start.reshape(num_a, num_t, num_k)[..., None] + need - 1
    valid = need <= n_tp[..., None]
    precision = np.where(valid, envelope[np.where(valid, idx, 0)] if len(envelope) else 0.0, 0.0)
    return precision.reshape(num_a, num_t, num_k, num_r), recall
