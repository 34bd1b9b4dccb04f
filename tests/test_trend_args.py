"""benchmarks/trend.py's command line: the names it accepts are `sesemi compare`'s."""

import pytest

from benchmarks import trend
from sesemi_common.methods import method_names


def test_a_stacked_method_is_a_study_arm_with_its_unlabeled_batch(tmp_path):
    args = trend.parse_args(["--steps", "10", "--seeds", "1", "--labels", "40", "--methods", "sesemi+entmin,supervised",
                             "--batch-labeled", "8", "--batch-unlabeled", "4", "--frameworks", "jax", "--report-only",
                             "--out", str(tmp_path)])
    assert args.methods == ["sesemi+entmin", "supervised"]
    stacked, baseline = (trend.run_config(args, key) for key in trend.run_keys(args))
    assert (stacked.method.name, stacked.train.batch_unlabeled) == ("sesemi+entmin", 4)
    assert (baseline.method.name, baseline.train.batch_unlabeled) == ("supervised", 0)


@pytest.mark.parametrize("option, value, message", [
    ("--methods", "sesemi,nonesuch", "argument --methods: unknown 'nonesuch': choose from "),
    ("--methods", "sesemi+sesemi", "argument --methods: method 'sesemi+sesemi' names a part twice"),
    ("--methods", "sesemi,sesemi", "argument --methods: give distinct names"),
    ("--frameworks", "jax,mxnet", "argument --frameworks: unknown 'mxnet': choose from jax, torch"),
])
def test_a_bad_name_is_a_one_line_usage_error(capsys, tmp_path, option, value, message):
    with pytest.raises(SystemExit) as stop:
        trend.parse_args(["--steps", "10", "--report-only", "--out", str(tmp_path), option, value])
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert stop.value.code == 2 and message in error and "Traceback" not in error
    if option == "--methods" and "unknown" in message:
        assert ", ".join(method_names()) in error
