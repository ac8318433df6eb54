"""The one ratio helper rounds like the marts' numeric(20, 6) (half away from zero), not like round()."""

from decimal import Decimal

from common.ratios import ratio


def test_six_decimals_half_away_from_zero():
    assert ratio(1, 3) == 0.333333
    assert ratio(2, 3) == 0.666667
    assert ratio(1, 2_000_000) == 0.000001  # exactly half: away from zero (round() gives 0.0 here)
    assert round(1 / 2_000_000, 6) == 0.0
    assert ratio(-1, 2_000_000) == -0.000001
    assert ratio(Decimal("7.5"), 10) == 0.75


def test_no_ratio_without_a_denominator():
    assert ratio(5, 0) is None
    assert ratio(0, None) is None
    assert ratio(0, 4) == 0.0
