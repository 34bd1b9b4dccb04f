"""The EMA's warm-up (train.ema_warmup, sesemi_common/ema.py): the Mean Teacher code's decay
min(1 - 1/(t + 1), d), t the optimizer steps taken counting the current one."""

import numpy as np
import pytest

from sesemi_common.config import Config, ConfigError, apply_overrides
from sesemi_common.ema import ema_decay_at


def _config(*overrides):
    return apply_overrides(Config(), ["method.name=mean_teacher", *overrides])


def test_the_warmup_is_the_mean_teacher_codes_decay():
    config = _config("train.ema_decay=0.95", "train.ema_warmup=true")
    assert [ema_decay_at(config, t) for t in (0, 1, 3, 9)] == [0.0, 0.5, 0.75, 0.9]
    assert ema_decay_at(config, 19) == 0.95  # 1 - 1/20 = 0.95: the cap takes over here
    assert ema_decay_at(config, 20) == ema_decay_at(config, 10_000) == 0.95
    # The method's default decay (Mean Teacher: 0.999) caps it when train.ema_decay is 0.
    default = _config("train.ema_warmup=true")
    assert ema_decay_at(default, 99) == 0.99 and ema_decay_at(default, 998) == 1 - 1 / 999 < 0.999
    assert ema_decay_at(default, 999) == pytest.approx(0.999) and ema_decay_at(default, 10_000) == 0.999


def test_an_array_of_steps_takes_the_frameworks_minimum():
    config = _config("train.ema_decay=0.9", "train.ema_warmup=true")
    steps = np.array([1, 4, 9, 10, 500], np.float32)
    decays = ema_decay_at(config, steps, minimum=np.minimum)
    np.testing.assert_allclose(decays, [0.5, 0.8, 0.9, 0.9, 0.9], rtol=1e-7)
    assert decays.dtype == np.float32  # the step's dtype: a float32 EMA stays float32 in JAX


def test_without_the_warmup_the_decay_is_the_fixed_float():
    config = _config("train.ema_decay=0.9")
    assert Config().train.ema_warmup is False
    # The same Python float at every step: the default update is what it was before the option.
    assert all(ema_decay_at(config, t) == 0.9 and type(ema_decay_at(config, t)) is float for t in (0, 1, 10**6))


def test_the_warmup_needs_an_ema():
    with pytest.raises(ConfigError, match=r"^train.ema_warmup needs an EMA: set train.ema_decay, e.g. 0.999$"):
        apply_overrides(Config(), ["train.ema_warmup=true"])  # SESEMI keeps no EMA by default
    assert apply_overrides(Config(), ["train.ema_warmup=true", "train.ema_decay=0.99"]).train.ema_warmup
