"""The EMA's decay in force at each update, shared by both trainers (framework-free).

By default every update uses the fixed decay d (`methods.ema_decay`), and the average starts
as a copy of the initial weights: after k updates the initial weights still weigh d^k (with
d = 0.999, 37% after 1000 steps), so early in training the teacher is mostly the random init.

`train.ema_warmup=true` is the original Mean Teacher code's rule (CuriousAI/mean-teacher,
pytorch/main.py, `update_ema_variables`): decay min(1 - 1/(t + 1), d), where t is that code's
`global_step` at the update. It increments `global_step` right after `optimizer.step()` and then
updates the EMA, so t is 1-based: the number of optimizer steps taken, this one included. The
first update (t = 1) uses 1/2, the t-th 1 - 1/(t + 1): until the cap d takes over, the EMA is the
plain mean of the initial weights and the t weights since, (w_0 + w_1 + ... + w_t) / (t + 1)
("use the true average until the exponential average is more correct"), and from
t = d / (1 - d) on (999 steps for d = 0.999) it is the ordinary EMA. (That code's EMA model
starts from its own random init; ours starts as a copy of the student's, as by default.)
"""

from __future__ import annotations

from . import methods


def ema_decay_at(config, t, minimum=min):
    """The decay of the EMA update after `t` optimizer steps (1-based, this one included).

    Without `train.ema_warmup` it is the fixed `methods.ema_decay(config)`, whatever `t` is (a
    Python float: the default path computes exactly what it did before the option existed).
    With it, min(1 - 1/(t + 1), d): t = 0 gives 0 (a copy), 1 gives 0.5, 9 gives 0.9.
    `t` may be an array: `minimum` is then the framework's elementwise minimum (the JAX step
    passes its traced step count and `jnp.minimum`, so the step needs no host sync)."""
    decay = methods.ema_decay(config)
    if not config.train.ema_warmup:
        return decay
    return minimum(1.0 - 1.0 / (t + 1.0), decay)
