"""Student's two-sample t-test, written with ``math`` alone (no SciPy at run time).

TCAV's significance test (Kim et al., ICML 2018, section 3.2; the authors' ``tcav`` code calls
``scipy.stats.ttest_ind`` with its defaults) compares the TCAV scores of a concept's CAVs with
those of random-versus-random CAVs by a two-sided t-test with pooled variance:

    s_p² = ((n₁ − 1) s₁² + (n₂ − 1) s₂²) / (n₁ + n₂ − 2),   t = (m₁ − m₂) / (s_p √(1/n₁ + 1/n₂)),
    p = P(|T_ν| ≥ |t|) = I_{ν/(ν + t²)}(ν/2, 1/2),            ν = n₁ + n₂ − 2,

with I_x(a, b) the regularised incomplete beta function, evaluated by its continued fraction
(modified Lentz's method; Press et al., Numerical Recipes, 3rd ed., section 6.4).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

_TINY = 1e-300
_EPS = 1e-15
_MAX_TERMS = 500


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of I_x(a, b) (converges quickly for x < (a + 1) / (a + b + 2))."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, _MAX_TERMS + 1):
        m2 = 2 * m
        for numerator in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + numerator / c
            c = c if abs(c) > _TINY else _TINY
            h *= d * c
        if abs(d * c - 1.0) < _EPS:
            break
    return h


def regularized_incomplete_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b) = B(x; a, b) / B(a, b) for a, b > 0 and x in [0, 1]."""
    if not (a > 0 and b > 0):
        raise ValueError(f"a and b must be > 0, got a={a}, b={b}")
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"x must be in [0, 1], got {x}")
    if x in (0.0, 1.0):
        return x
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_continued_fraction(a, b, x) / a
    return 1.0 - front * _beta_continued_fraction(b, a, 1.0 - x) / b


def student_t_two_sided_p(t: float, df: float) -> float:
    """P(|T| ≥ |t|) for Student's t with ``df`` degrees of freedom."""
    if not df > 0:
        raise ValueError(f"df must be > 0, got {df}")
    if math.isnan(t):
        return math.nan
    if math.isinf(t):
        return 0.0
    return min(1.0, regularized_incomplete_beta(df / 2.0, 0.5, df / (df + t * t)))


@dataclass(frozen=True)
class TTest:
    """A two-sample t-test: the statistic, its degrees of freedom and the two-sided p-value."""

    statistic: float
    df: float
    p_value: float


def ttest_ind(first: Sequence[float], second: Sequence[float]) -> TTest:
    """Student's two-sided t-test of equal means with pooled variance (``scipy.stats.ttest_ind``
    with its defaults: the same statistic and p-value, NaN where SciPy gives NaN).

    Args:
        first: the first sample (at least one value; the two together at least three).
        second: the second sample.

    Raises:
        ValueError: a sample is empty or the two hold fewer than three values.
    """
    a, b = [float(v) for v in first], [float(v) for v in second]
    n1, n2 = len(a), len(b)
    if n1 < 1 or n2 < 1 or n1 + n2 < 3:
        raise ValueError(f"samples must hold at least 1 value each and 3 together, got sizes {n1} and {n2}")
    m1, m2 = math.fsum(a) / n1, math.fsum(b) / n2
    ss1 = math.fsum((v - m1) ** 2 for v in a)
    ss2 = math.fsum((v - m2) ** 2 for v in b)
    df = float(n1 + n2 - 2)
    pooled = (ss1 + ss2) / df
    se = math.sqrt(pooled * (1.0 / n1 + 1.0 / n2))
    diff = m1 - m2
    if se == 0.0:
        t = math.nan if diff == 0.0 else math.copysign(math.inf, diff)
    else:
        t = diff / se
    return TTest(t, df, student_t_two_sided_p(t, df))
