"""Numba kernel of the fast box engine (imported lazily by :mod:`fcam_deploy.metrics.fast`; compiling it costs
a few seconds once, then the machine code is cached next to this file)."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _find(parent: np.ndarray, p: int) -> int:  # pragma: no cover - compiled
    root = p
    while parent[root] != root:
        root = parent[root]
    while parent[p] != root:
        nxt = parent[p]
        parent[p] = root
        p = nxt
    return root


@njit(cache=True, nogil=True)
def _best_iou(x0: int, y0: int, x1: int, y1: int, gt: np.ndarray) -> float:  # pragma: no cover - compiled
    best = 0.0
    area_b = (x1 - x0 + 1) * (y1 - y0 + 1)
    for g in range(gt.shape[0]):
        iw = min(x1, gt[g, 2]) - max(x0, gt[g, 0]) + 1
        ih = min(y1, gt[g, 3]) - max(y0, gt[g, 1]) + 1
        if iw < 0:
            iw = 0
        if ih < 0:
            ih = 0
        inter = iw * ih
        area_g = (gt[g, 2] - gt[g, 0] + 1) * (gt[g, 3] - gt[g, 1] + 1)
        den = area_b + area_g - inter
        iou = 0.0
        if den > 0:
            iou = inter / den
        if iou > best:
            best = iou
    return best


@njit(cache=True, nogil=True)
def sweep(u: np.ndarray, gt: np.ndarray):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """Component trees of one uint8 map, evaluated at every level 0..255 in one pass each.

    Foreground at level L is ``u > L`` (8-connected components, union-find in decreasing value order); its
    holes are the 4-connected components of ``u <= L`` that do not reach the image border (union-find in
    increasing value order with a virtual outside node). Per level L < max(u) it returns:

    * ``fg_best[L]``: best IoU with the GT of any outer-contour box ``(x0, y0, min(x1+1, W-1), min(y1+1, H-1))``;
    * ``hole_best[L]``: best IoU of any hole-contour box ``(hx0-1, hy0-1, min(hx1+2, W-1), min(hy1+2, H-1))``,
      -1 when there is no hole; ``n_holes[L]``;
    * ``v1_iou[L]``: IoU of the component whose outer contour has the largest polygon area (area from the
      2x2-cell rule: a cell with 4 corners in the component adds 1, with 3 adds 1/2; exact for components without
      holes), and ``v1_tie[L]`` = 1 when several components share that largest area (OpenCV's list order then
      decides: the caller asks OpenCV).
    """
    h, w = u.shape
    n = h * w
    flat = u.ravel()
    counts = np.zeros(257, np.int64)
    for p in range(n):
        counts[flat[p] + 1] += 1
    for v in range(256):
        counts[v + 1] += counts[v]
    order = np.empty(n, np.int64)
    fill = counts[:256].copy()
    top = 0
    for p in range(n):
        v = flat[p]
        if v > top:
            top = v
        order[fill[v]] = p
        fill[v] += 1

    fg_best = np.full(256, -1.0)
    v1_iou = np.full(256, -1.0)
    v1_tie = np.zeros(256, np.uint8)
    hole_best = np.full(256, -1.0)
    n_holes = np.zeros(256, np.int64)

    bx0 = np.empty(n + 1, np.int64)
    by0 = np.empty(n + 1, np.int64)
    bx1 = np.empty(n + 1, np.int64)
    by1 = np.empty(n + 1, np.int64)
    iou = np.zeros(n + 1, np.float64)
    dirty = np.zeros(n + 1, np.uint8)
    active = np.empty(n + 1, np.int64)

    # ---- foreground: u > L, 8-connectivity, levels L = top-1 .. 0 (pixels of value v join at L = v - 1)
    parent = np.full(n, -1, np.int64)
    area2 = np.zeros(n, np.int64)
    size = np.ones(n + 1, np.int64)
    nact = 0
    for v in range(top, 0, -1):
        s = counts[v]
        e = counts[v + 1]
        if s == e:
            fg_best[v - 1] = fg_best[v]
            v1_iou[v - 1] = v1_iou[v]
            v1_tie[v - 1] = v1_tie[v]
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
            area2[p] = 0
            dirty[p] = 1
            active[nact] = p
            nact += 1
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
                    rp = _find(parent, p)
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
            rp = _find(parent, p)
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
                    if c >= 3:
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
            if iou[r] > best:
                best = iou[r]
            if area2[r] > amax:
                amax = area2[r]
                acount = 1
                aiou = iou[r]
            elif area2[r] == amax:
                acount += 1
        nact = j
        fg_best[v - 1] = best
        v1_iou[v - 1] = aiou
        v1_tie[v - 1] = 1 if acount > 1 else 0

    # ---- holes: u <= L, 4-connectivity, levels L = 0 .. top-1; node n is the outside of the image
    out = n
    parent2 = np.full(n + 1, -1, np.int64)
    parent2[out] = out
    size[:] = 1
    size[out] = n + 2
    dirty[:] = 0
    nact = 0
    for v in range(0, top):
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
            parent2[p] = p
            bx0[p] = x
            bx1[p] = x
            by0[p] = y
            by1[p] = y
            dirty[p] = 1
            active[nact] = p
            nact += 1
            if y == 0 or x == 0 or y == h - 1 or x == w - 1:
                rp = _find(parent2, p)
                ro = _find(parent2, out)
                if rp != ro:
                    parent2[rp] = ro
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
                if parent2[q] == -1:
                    continue
                rp = _find(parent2, p)
                rq = _find(parent2, q)
                if rp == rq:
                    continue
                # the larger tree's root becomes the root; the outside node always stays a root
                if size[rp] > size[rq]:
                    rp, rq = rq, rp
                parent2[rp] = rq
                size[rq] += size[rp]
                bx0[rq] = min(bx0[rq], bx0[rp])
                by0[rq] = min(by0[rq], by0[rp])
                bx1[rq] = max(bx1[rq], bx1[rp])
                by1[rq] = max(by1[rq], by1[rp])
                dirty[rq] = 1
        ro = _find(parent2, out)
        j = 0
        best = -1.0
        cnt = 0
        for i in range(nact):
            r = active[i]
            if parent2[r] != r or r == ro:
                continue
            active[j] = r
            j += 1
            if dirty[r] == 1:
                iou[r] = _best_iou(bx0[r] - 1, by0[r] - 1, min(bx1[r] + 2, w - 1), min(by1[r] + 2, h - 1), gt)
                dirty[r] = 0
            cnt += 1
            if iou[r] > best:
                best = iou[r]
        nact = j
        hole_best[v] = best
        n_holes[v] = cnt
    return top, fg_best, hole_best, n_holes, v1_iou, v1_tie
