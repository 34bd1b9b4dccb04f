"""Statistics of the independent trend study (issue 5): seeds in, means, spreads and a verdict out.

Accuracies are in points (percent). The two frameworks draw their own random streams, so
their final accuracies are independent samples; the parity criterion compares their means
against the noise those samples show: the means must differ by less than
`max(floor, k * se)`, where `se = sqrt(s1^2/n1 + s2^2/n2)` is the standard error of the
difference of two independent means (floor 1 point, k = 2 in the study).

Beside the verdict, Welch's t-test gives the two-sided p-value of the same difference. It does
not change the verdict (docs/DESIGN.md section 5 sets the criterion); it says how surprising a gap
is with few seeds, where `k * se` is a normal approximation: with 3 seeds per side a difference
exceeds 2 standard errors by chance about 12% of the time (t with 4 degrees of freedom), not 5%.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np


@dataclass(frozen=True)
class MeanStd:
    mean: float
    std: float  # sample standard deviation (n - 1); 0.0 for a single value, which shows no spread
    n: int

    @property
    def variance_of_mean(self) -> float:
        return self.std ** 2 / self.n


def mean_std(values: Sequence[float]) -> MeanStd:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or len(values) == 0:
        raise ValueError(f"mean_std needs a non-empty list of numbers, got shape {values.shape}")
    std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return MeanStd(float(values.mean()), std, len(values))


def difference(a: MeanStd, b: MeanStd) -> tuple[float, float]:
    """(a.mean - b.mean, standard error of that difference) for independent samples."""
    return a.mean - b.mean, math.sqrt(a.variance_of_mean + b.variance_of_mean)


# A spread below this many points is rounding (an accuracy of 0.55 read back as 55.000000000000007),
# not a spread: a t statistic over it would be noise divided by noise.
NO_SPREAD = 1e-9


def welch_p_value(a: MeanStd, b: MeanStd) -> float | None:
    """Two-sided p-value of a.mean - b.mean under Welch's t-test (unequal variances, the
    Welch-Satterthwaite degrees of freedom); None where a side has one value or neither spreads."""
    if a.n < 2 or b.n < 2 or math.sqrt(a.variance_of_mean + b.variance_of_mean) < NO_SPREAD:
        return None
    diff, se = difference(a, b)
    dof = (a.variance_of_mean + b.variance_of_mean) ** 2 / (
        a.variance_of_mean ** 2 / (a.n - 1) + b.variance_of_mean ** 2 / (b.n - 1))
    return _two_sided_p(diff / se, dof)


def paired_p_value(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Two-sided p-value of mean(a - b) under the paired t-test (a[i] and b[i] share seed i: the
    same split and initial draw, so the pair's difference leaves out what the seed itself adds);
    None for fewer than 2 pairs or differences that do not spread."""
    diffs = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if len(diffs) < 2 or not diffs.std(ddof=1) >= NO_SPREAD:
        return None
    return _two_sided_p(diffs.mean() / (diffs.std(ddof=1) / math.sqrt(len(diffs))), len(diffs) - 1)


def _two_sided_p(t: float, dof: float) -> float:
    """P(|T| >= |t|) for Student's t with `dof` degrees of freedom."""
    from scipy import stats  # a dependency of the package; imported here to keep this module numpy-only

    return float(2 * stats.t.sf(abs(t), dof))


@dataclass(frozen=True)
class Verdict:
    difference: float  # a.mean - b.mean, points
    standard_error: float
    threshold: float  # max(floor, k * standard_error)
    passed: bool  # |difference| < threshold
    p_value: float | None  # Welch's two-sided p of the difference: information, not part of the verdict


def parity_verdict(a: MeanStd, b: MeanStd, floor: float = 1.0, k: float = 2.0) -> Verdict:
    """Whether two frameworks' mean accuracies agree: |a - b| < max(floor, k * se), strictly."""
    diff, se = difference(a, b)
    threshold = max(floor, k * se)
    return Verdict(diff, se, threshold, abs(diff) < threshold, welch_p_value(a, b))


def mean_curve(curves: Sequence[Mapping[int, float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps, mean, sample std) over the curves at the steps all of them share; std 0 for one curve."""
    if not curves:
        raise ValueError("mean_curve needs at least one curve")
    steps = sorted(set.intersection(*(set(curve) for curve in curves)))
    values = np.array([[curve[step] for step in steps] for curve in curves], dtype=np.float64)
    std = values.std(axis=0, ddof=1) if len(curves) > 1 else np.zeros(len(steps))
    return np.array(steps, dtype=np.int64), values.mean(axis=0), std
