import math

import numpy as np
import pytest

from sesemi_common.trend_stats import (MeanStd, difference, mean_curve, mean_std, paired_p_value, parity_verdict,
                                       welch_p_value)

# Final test accuracies (points) of three seeds per framework, hand-computed below.
JAX = [70.1, 71.3, 69.8]  # mean 70.4; deviations -0.3, 0.9, -0.6; sum of squares 1.26 -> var 0.63
TORCH = [68.9, 69.5, 70.2]  # mean 208.6/3; sum of squares of deviations 2.54/3 -> var 1.27/3


def test_mean_and_sample_std_by_hand():
    jax_stats, torch_stats = mean_std(JAX), mean_std(TORCH)
    assert jax_stats.n == torch_stats.n == 3
    assert jax_stats.mean == pytest.approx(70.4, abs=1e-12)
    assert jax_stats.std == pytest.approx(math.sqrt(0.63), abs=1e-12)  # n - 1 in the denominator
    assert torch_stats.mean == pytest.approx(208.6 / 3, abs=1e-12)
    assert torch_stats.std == pytest.approx(math.sqrt(1.27 / 3), abs=1e-12)


def test_single_seed_has_no_spread():
    assert mean_std([64.25]) == MeanStd(64.25, 0.0, 1)


def test_empty_is_an_error():
    with pytest.raises(ValueError, match=r"mean_std needs a non-empty list of numbers, got shape \(0,\)"):
        mean_std([])


def test_difference_standard_error_by_hand():
    diff, se = difference(mean_std(JAX), mean_std(TORCH))
    assert diff == pytest.approx(70.4 - 208.6 / 3, abs=1e-12)  # 0.8667
    assert se == pytest.approx(math.sqrt(3.16) / 3, abs=1e-12)  # sqrt(0.63/3 + (1.27/3)/3) = 0.5925


def test_pass_when_two_standard_errors_exceed_the_floor():
    verdict = parity_verdict(mean_std(JAX), mean_std(TORCH))
    assert verdict.threshold == pytest.approx(2 * math.sqrt(3.16) / 3, abs=1e-12)  # 1.185 > 1 point
    assert verdict.passed  # |0.867| < 1.185


def test_noisy_seeds_allow_a_gap_above_one_point():
    # means 72.333 and 69.833 (gap 2.5); variances 38/6 and 9.5/6 -> se = sqrt(47.5/18) = 1.624
    verdict = parity_verdict(mean_std([75.0, 70.0, 72.0]), mean_std([70.0, 71.0, 68.5]))
    assert verdict.difference == pytest.approx(2.5, abs=1e-12)
    assert verdict.threshold == pytest.approx(2 * math.sqrt(47.5 / 18), abs=1e-12)
    assert verdict.passed


def test_fail_when_tight_seeds_differ_by_two_points():
    # stds 0.2 and 0.4 -> se = sqrt(0.2/3) = 0.258, so the 1-point floor is the threshold
    verdict = parity_verdict(mean_std([72.0, 72.2, 71.8]), mean_std([70.0, 70.4, 69.6]))
    assert verdict.difference == pytest.approx(2.0, abs=1e-12)
    assert verdict.standard_error == pytest.approx(math.sqrt(0.2 / 3), abs=1e-12)
    assert verdict.threshold == 1.0
    assert not verdict.passed


def test_criterion_is_strict_at_the_floor():
    verdict = parity_verdict(mean_std([71.0]), mean_std([70.0]))  # one seed each: threshold = floor
    assert (verdict.difference, verdict.threshold, verdict.passed) == (1.0, 1.0, False)
    assert parity_verdict(mean_std([70.0]), mean_std([70.5])).passed  # sign does not matter


def test_mean_curve_over_shared_steps():
    steps, mean, std = mean_curve([{100: 20.0, 200: 30.0}, {100: 22.0, 200: 34.0, 300: 40.0}])
    np.testing.assert_array_equal(steps, [100, 200])  # 300 is missing from the first curve
    np.testing.assert_allclose(mean, [21.0, 32.0], atol=1e-12)
    np.testing.assert_allclose(std, [math.sqrt(2.0), math.sqrt(8.0)], atol=1e-12)


def test_mean_curve_of_one_run():
    steps, mean, std = mean_curve([{50: 11.5, 10: 9.0}])
    np.testing.assert_array_equal(steps, [10, 50])
    np.testing.assert_allclose(mean, [9.0, 11.5])
    np.testing.assert_array_equal(std, [0.0, 0.0])


def student_t_cdf_4_dof(t: float) -> float:
    """The t distribution's CDF at 4 degrees of freedom in closed form: 1/2 + 3/4 x (1 - x^2/3),
    x = t / sqrt(4 + t^2) (its density at 0 is 3/8, its limit 1)."""
    x = t / math.sqrt(4 + t * t)
    return 0.5 + 0.75 * x * (1 - x * x / 3)


def test_welch_p_value_by_hand_at_four_degrees_of_freedom():
    # Equal n = 3 and equal variances (std 2 each): Welch's degrees of freedom are exactly 2 (n - 1) = 4.
    a, b = mean_std([0.0, 2.0, 4.0]), mean_std([3.0, 5.0, 7.0])
    t = 3.0 / math.sqrt(4 / 3 + 4 / 3)  # 1.837
    assert welch_p_value(a, b) == pytest.approx(2 * (1 - student_t_cdf_4_dof(t)), abs=1e-9)  # 0.140
    assert welch_p_value(b, a) == welch_p_value(a, b)


def test_two_standard_errors_are_not_five_percent_with_three_seeds():
    # A gap of exactly 2 se with 3 seeds a side: p = 0.116, where a normal approximation says 0.046.
    a, b = mean_std([0.0, 2.0, 4.0]), mean_std([0.0, 2.0, 4.0])
    shifted = mean_std([v + 2 * math.sqrt(8 / 3) for v in [0.0, 2.0, 4.0]])
    assert welch_p_value(shifted, b) == pytest.approx(2 * (1 - student_t_cdf_4_dof(2.0)), abs=1e-9)
    assert welch_p_value(shifted, b) == pytest.approx(0.1161, abs=1e-4)
    assert welch_p_value(a, b) == pytest.approx(1.0)


def test_no_p_value_without_spread_or_with_one_seed():
    assert welch_p_value(mean_std([71.0]), mean_std([70.0, 70.5])) is None
    assert welch_p_value(mean_std([71.0, 71.0]), mean_std([70.0, 70.0])) is None
    assert parity_verdict(mean_std([71.0]), mean_std([70.0])).p_value is None


def test_the_verdict_carries_the_p_value_and_ignores_it():
    # The tight seeds of test_fail_when_tight_seeds_differ_by_two_points: p is small and the verdict FAIL;
    # noisy seeds with a 2.5-point gap PASS whatever p says.
    tight = parity_verdict(mean_std([72.0, 72.2, 71.8]), mean_std([70.0, 70.4, 69.6]))
    assert tight.p_value == welch_p_value(mean_std([72.0, 72.2, 71.8]), mean_std([70.0, 70.4, 69.6])) < 0.01
    noisy = parity_verdict(mean_std([75.0, 70.0, 72.0]), mean_std([70.0, 71.0, 68.5]))
    assert noisy.passed and 0.05 < noisy.p_value < 0.5


def test_paired_p_value_by_hand_at_two_degrees_of_freedom():
    # Differences 2, 3, 1: mean 2, sd 1, t = 2 / (1 / sqrt 3) = 3.464 at 2 degrees of freedom, whose
    # CDF is 1/2 + t / (2 sqrt(t^2 + 2)): p = 1 - t / sqrt(t^2 + 2) = 0.0742.
    t = 2 * math.sqrt(3)
    assert paired_p_value([60.0, 50.0, 70.0], [58.0, 47.0, 69.0]) == pytest.approx(1 - t / math.sqrt(t * t + 2),
                                                                                    abs=1e-9)
    # The same pairs as independent samples: the seeds' spread (sd 10) hides the gain.
    assert welch_p_value(mean_std([60.0, 50.0, 70.0]), mean_std([58.0, 47.0, 69.0])) > 0.8


def test_no_paired_p_value_for_one_pair_or_a_constant_difference():
    assert paired_p_value([60.0], [58.0]) is None
    assert paired_p_value([60.0, 50.0], [55.0, 45.0]) is None
    # 100 x 0.57 and 100 x 0.52 differ from 5 in the 15th digit: rounding, not spread
    assert paired_p_value([100 * 0.57, 100 * 0.55, 100 * 0.59], [100 * 0.52, 100 * 0.50, 100 * 0.54]) is None
