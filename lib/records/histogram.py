"""The latency histogram the usage counters keep: fixed bucket bounds, and quantiles estimated from them.

p50/p95 are *estimates* interpolated linearly inside the bucket (as Prometheus' ``histogram_quantile``
does), never more precise than the bucket they fall in.
"""

from __future__ import annotations

import math

LATENCY_BUCKETS_MS: tuple[float, ...] = (
    5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, math.inf,
)
#: The counter field of each bucket (``lat_le_5`` ... ``lat_le_inf``).
BUCKET_FIELDS: tuple[str, ...] = tuple(f"lat_le_{'inf' if math.isinf(b) else int(b)}" for b in LATENCY_BUCKETS_MS)
_NB = len(LATENCY_BUCKETS_MS)


def bucket_index(latency_ms: float) -> int:
    """Index in ``LATENCY_BUCKETS_MS`` of the first bound >= ``latency_ms`` (negative/NaN count as 0)."""
    value = latency_ms if latency_ms == latency_ms and latency_ms > 0 else 0.0
    for i, bound in enumerate(LATENCY_BUCKETS_MS):
        if value <= bound:
            return i
    return _NB - 1


def percentile_from_buckets(counts: list[int], q: float) -> float | None:
    """Estimate the ``q`` quantile (0..1) in ms from per-bucket counts aligned with ``LATENCY_BUCKETS_MS``.

    Linear interpolation inside the bucket holding the rank; the first bucket starts at 0 and a rank in the
    open ``+inf`` bucket returns the last finite bound (a lower bound). ``None`` when there are no samples.
    """
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    seen = 0
    for i, count in enumerate(counts):
        if count and seen + count >= rank:
            upper = LATENCY_BUCKETS_MS[i]
            lower = LATENCY_BUCKETS_MS[i - 1] if i else 0.0
            if math.isinf(upper):
                return float(lower)
            return round(lower + (upper - lower) * max(0.0, rank - seen) / count, 1)
        seen += count
    return float(LATENCY_BUCKETS_MS[-2])
