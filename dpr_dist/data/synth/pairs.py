"""Drug-pair sampling of the synthetic generator's plan: pairs inside groups, random new
pairs, and the antagonistic pairs between first-line bundles (``SynthKnobs.bundle_clash``)."""

from __future__ import annotations

import numpy as np


def _pairs_within(groups: list[np.ndarray]) -> np.ndarray:
    """``[M, 2]`` unordered pairs (lo, hi) of distinct drugs inside each group."""
    out = []
    for g in groups:
        g = np.unique(g[g >= 0])
        i, j = np.triu_indices(len(g), 1)
        out.append(np.stack([g[i], g[j]], 1))
    return np.unique(np.concatenate(out) if out else np.zeros((0, 2), np.int64), axis=0).reshape(-1, 2)


def _sample_pairs(pool: np.ndarray, n: int, taken: set, rng: np.random.Generator) -> np.ndarray:
    """Up to ``n`` new unordered pairs from ``pool`` x ``pool`` not in ``taken`` (updated)."""
    out: list[tuple[int, int]] = []
    for _ in range(8):
        if len(out) >= n or len(pool) < 2:
            break
        m = 2 * (n - len(out)) + 16
        a, b = rng.choice(pool, m), rng.choice(pool, m)
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        keep = lo != hi
        for x, y in zip(lo[keep].tolist(), hi[keep].tolist()):
            if (x, y) not in taken:
                taken.add((x, y))
                out.append((x, y))
                if len(out) == n:
                    break
    return np.array(out, np.int64).reshape(-1, 2)


def _clash_pairs(bundles: np.ndarray, aligned: np.ndarray, first: np.ndarray, compat: np.ndarray, taken: set,
                 p: float, rng: np.random.Generator) -> np.ndarray:
    """Antagonistic pairs between first-line bundles (``SynthKnobs.bundle_clash``).

    Each pair of conditions that may co-occur (``compat``) and have distinct first-line
    bundles clashes with probability ``p``: one aligned drug of each bundle, drawn at random,
    form an antagonistic pair, unless that pair is in ``taken`` (updated with the new ones).

    Returns:
        ``[K, 4]`` rows ``(c1, c2, a, b)`` with ``c1 < c2`` and ``a < b``.
    """
    out = []
    c1s, c2s = np.nonzero(np.triu(compat, 1))
    draw = rng.random(len(c1s)) < p
    for c1, c2 in zip(c1s[draw].tolist(), c2s[draw].tolist()):
        if first[c1] == first[c2]:
            continue
        ma, mb = (bundles[first[c]][bundles[first[c]] >= 0] for c in (c1, c2))
        ma, mb = ma[aligned[ma]], mb[aligned[mb]]
        if not len(ma) or not len(mb):
            continue
        a, b = int(rng.choice(ma)), int(rng.choice(mb))
        lo, hi = min(a, b), max(a, b)
        if (lo, hi) not in taken:
            taken.add((lo, hi))
            out.append((c1, c2, lo, hi))
    return np.array(out, np.int64).reshape(-1, 4)
