"""Numba kernels of the fast box engine (imported lazily by :mod:`fcam_deploy.metrics.fast`; compiling them costs
a few seconds once, then the machine code is cached next to this file)."""

from __future__ import annotations

import numpy as np
from numba import njit

# pragma: no cover (compiled code; tested through fcam_deploy.metrics.fast against the OpenCV reference)


@njit(cache=True, nogil=True)
def _find(parent: np.ndarray, p: int) -> int:
    root = p
    while parent[root] != root:
        root = parent[root]
    while parent[p] != root:
        nxt = parent[p]
        parent[p] = root
        p = nxt
    return root


@njit(cache=True, nogil=True)
def _best_iou(x0: int, y0: int, x1: int, y1: int, gt: np.ndarray) -> float:
    """max over GT boxes of the inclusive-pixel IoU (0 where the denominator is <= 0)."""
    best = 0.0
    area_b = (x1 - x0 + 1) * (y1 - y0 + 1)
    for g in range(gt.shape[0]):
        iw = min(x1, gt[g, 2]) - max(x0, gt[g, 0]) + 1
        ih = min(y1, gt[g, 3]) - max(y0, gt[g, 1]) + 1
        iw = max(iw, 0)
        ih = max(ih, 0)
        inter = iw * ih
        area_g = (gt[g, 2] - gt[g, 0] + 1) * (gt[g, 3] - gt[g, 1] + 1)
        den = area_b + area_g - inter
        iou = 0.0
        if den > 0:
            iou = inter / den
        best = max(best, iou)
    return best


@njit(cache=True, nogil=True)
def _counting_order(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Pixels sorted by value (stable counting sort): ``order[counts[v]:counts[v+1]]`` have value v."""
    n = flat.shape[0]
    counts = np.zeros(257, np.int64)
    top = 0
    for p in range(n):
        v = flat[p]
        counts[v + 1] += 1
        top = max(top, v)
    for v in range(256):
        counts[v + 1] += counts[v]
    order = np.empty(n, np.int32)
    fill = counts[:256].copy()
    for p in range(n):
        v = flat[p]
        order[fill[v]] = p
        fill[v] += 1
    return counts, order, top


@njit(cache=True, nogil=True)
def _fg_pass(
    flat: np.ndarray,
    counts: np.ndarray,
    order: np.ndarray,
    top: int,
    h: int,
    w: int,
    gt: np.ndarray,
    want_area: bool,
    best_out: np.ndarray,
    area_iou: np.ndarray,
    area_tie: np.ndarray,
) -> None:
    """Foreground ``flat > L``, 8-connected, for L = top-1 .. 0 (pixels of value v join at L = v - 1).

    best_out[L]: best IoU of any component box ``(x0, y0, min(x1+1, W-1), min(y1+1, H-1))``.
    With want_area: area_iou[L] = IoU of the component of largest polygon area (2x2-cell rule: a cell with 4
    corners in the component adds 1, with 3 adds 1/2), area_tie[L] = 1 when several components share it.
    """
    n = h * w
    parent = np.full(n, -1, np.int32)
    size = np.ones(n, np.int32)
    area2 = np.zeros(n, np.int64)
    bx0 = np.empty(n, np.int32)
    by0 = np.empty(n, np.int32)
    bx1 = np.empty(n, np.int32)
    by1 = np.empty(n, np.int32)
    iou = np.zeros(n, np.float64)
    dirty = np.zeros(n, np.uint8)
    active = np.empty(n, np.int32)
    nact = 0
    for v in range(top, 0, -1):
        s = counts[v]
        e = counts[v + 1]
        if s == e:
            best_out[v - 1] = best_out[v]
            area_iou[v - 1] = area_iou[v]
            area_tie[v - 1] = area_tie[v]
            continue
        for k in range(s, e):
            p = order[k]
            y = p // w
            x = p - y * w
            parent[p] = p
            bx0[p] = x
            bx1[p] = x
            by0[p] = y
            by1[p] = y
            dirty[p] = 1
            active[nact] = p
            nact += 1
            rp = p
            for dy in range(-1, 2):
                yy = y + dy
                if yy < 0 or yy >= h:
                    continue
                for dx in range(-1, 2):
                    xx = x + dx
                    if (dy == 0 and dx == 0) or xx < 0 or xx >= w:
                        continue
                    q = yy * w + xx
                    if parent[q] == -1:
                        continue
                    rq = _find(parent, q)
                    if rp == rq:
                        continue
                    if size[rp] < size[rq]:
                        rp, rq = rq, rp
                    parent[rq] = rp
                    size[rp] += size[rq]
                    bx0[rp] = min(bx0[rp], bx0[rq])
                    by0[rp] = min(by0[rp], by0[rq])
                    bx1[rp] = max(bx1[rp], bx1[rq])
                    by1[rp] = max(by1[rp], by1[rq])
                    area2[rp] += area2[rq]
                    dirty[rp] = 1
            if not want_area:
                continue
            for cy in range(y - 1, y + 1):
                if cy < 0 or cy > h - 2:
                    continue
                for cx in range(x - 1, x + 1):
                    if cx < 0 or cx > w - 2:
                        continue
                    q = cy * w + cx
                    c = 0
                    if parent[q] != -1:
                        c += 1
                    if parent[q + 1] != -1:
                        c += 1
                    if parent[q + w] != -1:
                        c += 1
                    if parent[q + w + 1] != -1:
                        c += 1
                    if c >= 3:  # p is the 3rd or the 4th corner of this cell: +1/2 each time
                        area2[rp] += 1
        j = 0
        best = -1.0
        amax = -1
        acount = 0
        aiou = 0.0
        for i in range(nact):
            r = active[i]
            if parent[r] != r:
                continue
            active[j] = r
            j += 1
            if dirty[r] == 1:
                iou[r] = _best_iou(bx0[r], by0[r], min(bx1[r] + 1, w - 1), min(by1[r] + 1, h - 1), gt)
                dirty[r] = 0
            best = max(best, iou[r])
            if area2[r] > amax:
                amax = area2[r]
                acount = 1
                aiou = iou[r]
            elif area2[r] == amax:
                acount += 1
        nact = j
        best_out[v - 1] = best
        area_iou[v - 1] = aiou
        area_tie[v - 1] = 1 if acount > 1 else 0


@njit(cache=True, nogil=True)
def _hole_pass(
    flat: np.ndarray,
    counts: np.ndarray,
    order: np.ndarray,
    top: int,
    h: int,
    w: int,
    gt: np.ndarray,
    hole_best: np.ndarray,
    n_holes: np.ndarray,
) -> None:
    """Holes of ``flat > L``: 4-connected components of ``flat <= L`` not reaching the image border, for
    L = 0 .. top-1 (union-find in increasing value order; node n is the outside of the image).

    hole_best[L]: best IoU of any hole-contour box ``(hx0-1, hy0-1, min(hx1+2, W-1), min(hy1+2, H-1))``
    (-1 without holes); n_holes[L].
    """
    n = h * w
    out = n
    parent = np.full(n + 1, -1, np.int32)
    parent[out] = out
    size = np.ones(n + 1, np.int32)
    size[out] = n + 2  # the outside always stays a root
    bx0 = np.empty(n + 1, np.int32)
    by0 = np.empty(n + 1, np.int32)
    bx1 = np.empty(n + 1, np.int32)
    by1 = np.empty(n + 1, np.int32)
    iou = np.zeros(n + 1, np.float64)
    dirty = np.zeros(n + 1, np.uint8)
    active = np.empty(n + 1, np.int32)
    nact = 0
    for v in range(top):
        s = counts[v]
        e = counts[v + 1]
        if s == e:
            if v > 0:
                hole_best[v] = hole_best[v - 1]
                n_holes[v] = n_holes[v - 1]
            continue
        for k in range(s, e):
            p = order[k]
            y = p // w
            x = p - y * w
            parent[p] = p
            bx0[p] = x
            bx1[p] = x
            by0[p] = y
            by1[p] = y
            dirty[p] = 1
            active[nact] = p
            nact += 1
            rp = p
            if y == 0 or x == 0 or y == h - 1 or x == w - 1:
                rp = _find(parent, out)
                parent[p] = rp
            for t in range(4):
                yy = y
                xx = x
                if t == 0:
                    yy = y - 1
                elif t == 1:
                    yy = y + 1
                elif t == 2:
                    xx = x - 1
                else:
                    xx = x + 1
                if yy < 0 or yy >= h or xx < 0 or xx >= w:
                    continue
                q = yy * w + xx
                if parent[q] == -1:
                    continue
                rq = _find(parent, q)
                if rp == rq:
                    continue
                if size[rp] > size[rq]:
                    rp, rq = rq, rp
                parent[rp] = rq
                size[rq] += size[rp]
                bx0[rq] = min(bx0[rq], bx0[rp])
                by0[rq] = min(by0[rq], by0[rp])
                bx1[rq] = max(bx1[rq], bx1[rp])
                by1[rq] = max(by1[rq], by1[rp])
                dirty[rq] = 1
                rp = rq
        ro = _find(parent, out)
        j = 0
        best = -1.0
        cnt = 0
        for i in range(nact):
            r = active[i]
            if parent[r] != r or r == ro:
                continue
            active[j] = r
            j += 1
            if dirty[r] == 1:
                iou[r] = _best_iou(bx0[r] - 1, by0[r] - 1, min(bx1[r] + 2, w - 1), min(by1[r] + 2, h - 1), gt)
                dirty[r] = 0
            cnt += 1
            best = max(best, iou[r])
        nact = j
        hole_best[v] = best
        n_holes[v] = cnt


@njit(cache=True, nogil=True)
def _fill_holes(flat: np.ndarray, h: int, w: int) -> np.ndarray:
    """``c(p)`` = the lowest level L at which p joins the border-connected background of ``flat <= L``
    (min over 4-paths to the border of the path maximum): priority flood with a bucket queue. ``{c > L}`` is
    ``{flat > L}`` with every hole filled."""
    n = h * w
    c = np.empty(n, np.uint8)
    seen = np.zeros(n, np.uint8)
    head = np.full(256, -1, np.int64)
    nxt = np.full(n, -1, np.int32)
    for p in range(n):
        y = p // w
        x = p - y * w
        if y == 0 or x == 0 or y == h - 1 or x == w - 1:
            v = flat[p]
            c[p] = v
            seen[p] = 1
            nxt[p] = head[v]
            head[v] = p
    for level in range(256):
        while head[level] != -1:
            p = head[level]
            head[level] = nxt[p]
            y = p // w
            x = p - y * w
            for t in range(4):
                yy = y
                xx = x
                if t == 0:
                    yy = y - 1
                elif t == 1:
                    yy = y + 1
                elif t == 2:
                    xx = x - 1
                else:
                    xx = x + 1
                if yy < 0 or yy >= h or xx < 0 or xx >= w:
                    continue
                q = yy * w + xx
                if seen[q] == 1:
                    continue
                seen[q] = 1
                v = flat[q]
                v = max(v, level)
                c[q] = v
                nxt[q] = head[v]
                head[v] = q
    return c


@njit(cache=True, nogil=True)
def sweep(
    u: np.ndarray, gt: np.ndarray, want_v1: bool, want_v2: bool
) -> tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-level results of one uint8 (H, W) map, for levels L < max(u) (foreground ``u > L``).

    V2 (all contours): ``fg_best[L]`` (outer contours), ``hole_best[L]`` / ``n_holes[L]`` (hole contours).
    v1 (largest contour): the largest contour is the outer contour of a top-level component (every other
    contour lies inside one); top-level components are the 8-components of the hole-filled map ``{c > L}``, whose
    polygon area the cell rule gives exactly. ``v1_iou[L]`` is the IoU of the largest; ``v1_tie[L]`` = 1 when
    several top-level components share the largest area (OpenCV's list order decides: the caller asks OpenCV).
    """
    h, w = u.shape
    if h * w > 2**31 - 3:
        raise ValueError("map too large for the int32 union-find")
    flat = u.ravel()
    counts, order, top = _counting_order(flat)
    fg_best = np.full(256, -1.0)
    hole_best = np.full(256, -1.0)
    n_holes = np.zeros(256, np.int64)
    v1_iou = np.full(256, -1.0)
    v1_tie = np.zeros(256, np.uint8)
    unused_iou = np.full(256, -1.0)
    unused_tie = np.zeros(256, np.uint8)
    if want_v2:
        _fg_pass(flat, counts, order, top, h, w, gt, False, fg_best, unused_iou, unused_tie)
        _hole_pass(flat, counts, order, top, h, w, gt, hole_best, n_holes)
    if want_v1:
        filled = _fill_holes(flat, h, w)
        fcounts, forder, ftop = _counting_order(filled)
        unused_best = np.full(256, -1.0)
        _fg_pass(filled, fcounts, forder, ftop, h, w, gt, True, unused_best, v1_iou, v1_tie)
    return top, fg_best, hole_best, n_holes, v1_iou, v1_tie
