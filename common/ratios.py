"""Ratios as the marts compute them (docs/metrics.md, Conventions): six decimals, rounded half away from zero,
none when the denominator is 0. Python's round() rounds half to even; this is the one helper that does not."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

SIX_DECIMALS = Decimal("0.000001")


def ratio(numerator: int | float | Decimal, denominator: int | float | Decimal | None) -> float | None:
    """numerator / denominator like the marts' numeric(20, 6) ratios (a funnel's conversion, a drop-off rate)."""
    if not denominator:
        return None
    return float((Decimal(numerator) / Decimal(denominator)).quantize(SIX_DECIMALS, rounding=ROUND_HALF_UP))
