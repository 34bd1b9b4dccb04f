"""Why is a Flax ResNet train step on CPU slower than PyTorch eager, and what closes the gap?

Self-contained twins (Flax NHWC and PyTorch NCHW) of ResNet-20 (option B shortcuts) and
WRN-28-2 (pre-activation), BatchNorm with batch statistics, bias-free convs, GAP, linear.
A train step is forward + backward + SGD (momentum 0.9, Nesterov), float32.

Every JAX variant keeps the maths; only the way a convolution (or BatchNorm) is written
for XLA changes. Variants and the PyTorch baseline run interleaved in one process
(A, B, A, B, ...) because the CPU is shared: compare ratios to `torch_eager`.

    python benchmarks/jax_speed_study.py --model resnet20 --mode sesemi \
        --variants lax,wgrad_dot,conv_dot --torch eager,channels_last --json /tmp/r.json
    python benchmarks/jax_speed_study.py --convs     # per-conv fwd / input-grad / weight-grad
    python benchmarks/jax_speed_study.py --check     # max |grad - grad(lax)| per variant

Modes: `plain` = one call on a batch of 128; `sesemi` = 96 labeled images, then 16 unlabeled
images x 6 proxy views (two backbone calls, two heads); images/s counts 96 + 96.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
from jax import lax

NHWC = ("NHWC", "HWIO", "NHWC")
NCHW = ("NCHW", "OIHW", "NCHW")
LR, MOMENTUM = 0.05, 0.9


# ----------------------------------------------------------------------------- conv maths
def conv_lax(x, w, stride, pad):
    """Reference: one XLA convolution; XLA derives both backward convolutions itself."""
    return lax.conv_general_dilated(x, w, (stride, stride), ((pad, pad), (pad, pad)),
                                    dimension_numbers=NHWC)


def shifted_windows(x, kh, kw, stride, pad):
    """The kh*kw strided views of the padded input that a conv multiplies by w[i, j]."""
    if pad:
        x = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    n, h, w_, c = x.shape
    ho, wo = (h - kh) // stride + 1, (w_ - kw) // stride + 1
    return [lax.slice(x, (0, i, j, 0), (n, i + stride * (ho - 1) + 1, j + stride * (wo - 1) + 1, c),
                      (1, stride, stride, 1))
            for i in range(kh) for j in range(kw)]


def conv_shift9(x, w, stride, pad):
    """Conv as a sum of kh*kw shifted matmuls; autodiff turns each into two more matmuls."""
    kh, kw, _, _ = w.shape
    wins = shifted_windows(x, kh, kw, stride, pad)
    out = None
    for k, win in enumerate(wins):
        term = jnp.einsum("nhwc,co->nhwo", win, w[k // kw, k % kw])
        out = term if out is None else out + term
    return out


def conv_im2col(x, w, stride, pad):
    """Conv as one matmul of the (i, j, c)-ordered patch matrix with w reshaped (HWI, O)."""
    kh, kw, ci, co = w.shape
    if kh == kw == 1 and pad == 0:
        return jnp.einsum("nhwc,co->nhwo", x[:, ::stride, ::stride, :], w[0, 0])
    cols = jnp.concatenate(shifted_windows(x, kh, kw, stride, pad), axis=-1)
    return jnp.einsum("nhwk,ko->nhwo", cols, w.reshape(kh * kw * ci, co))


def wgrad_dot(x, g, w_shape, stride, pad):
    """dL/dw[i, j] = window(i, j)^T @ g: kh*kw matmuls contracting over N*Ho*Wo."""
    kh, kw, ci, co = w_shape
    wins = shifted_windows(x, kh, kw, stride, pad)
    g2 = g.reshape(-1, co)
    parts = [lax.dot_general(win.reshape(-1, ci), g2, (((0,), (0,)), ((), ()))) for win in wins]
    return jnp.stack(parts).reshape(kh, kw, ci, co)


def wgrad_im2col(x, g, w_shape, stride, pad):
    """dL/dw = cols^T @ g with cols the (i, j, c) patch matrix: one matmul, K = N*Ho*Wo."""
    kh, kw, ci, co = w_shape
    cols = jnp.concatenate(shifted_windows(x, kh, kw, stride, pad), axis=-1)
    dw = lax.dot_general(cols.reshape(-1, kh * kw * ci), g.reshape(-1, co), (((0,), (0,)), ((), ())))
    return dw.reshape(kh, kw, ci, co)


def make_custom_conv(wgrad):
    """Forward and input-grad are XLA's convolutions; the weight gradient is `wgrad`."""

    @partial(jax.custom_vjp, nondiff_argnums=(2, 3))
    def conv(x, w, stride, pad):
        return conv_lax(x, w, stride, pad)

    def fwd(x, w, stride, pad):
        return conv_lax(x, w, stride, pad), (x, w)

    def bwd(stride, pad, res, g):
        x, w = res
        _, x_vjp = jax.vjp(lambda x_: conv_lax(x_, w, stride, pad), x)
        return x_vjp(g)[0], wgrad(x, g, w.shape, stride, pad)

    conv.defvjp(fwd, bwd)
    return conv


CONV_IMPLS = {
    "lax": conv_lax,
    "shift9": conv_shift9,
    "im2col": conv_im2col,
    "wgrad_dot": make_custom_conv(wgrad_dot),
    "wgrad_im2col": make_custom_conv(wgrad_im2col),
}


# ----------------------------------------------------------------------------- Flax models
class Conv(nn.Module):
    features: int
    kernel: int
    stride: int = 1
    impl: str = "lax"
    layout: str = "NHWC"

    @nn.compact
    def __call__(self, x):
        init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
        cin = x.shape[-1] if self.layout == "NHWC" else x.shape[1]
        w = self.param("kernel", init, (self.kernel, self.kernel, cin, self.features), jnp.float32)
        pad = self.kernel // 2
        if self.layout == "NCHW":
            return lax.conv_general_dilated(x, w.transpose(3, 2, 0, 1), (self.stride,) * 2,
                                            ((pad, pad), (pad, pad)), dimension_numbers=NCHW)
        return CONV_IMPLS[self.impl](x, w, self.stride, pad)


class BatchNorm(nn.Module):
    """Train-mode BN with torch's unbiased running-variance update; `stats` picks the formula."""

    stats: str = "two_pass"
    layout: str = "NHWC"

    @nn.compact
    def __call__(self, x):
        axis = -1 if self.layout == "NHWC" else 1
        c = x.shape[axis]
        scale = self.param("scale", nn.initializers.ones, (c,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32)
        ra_mean = self.variable("batch_stats", "mean", jnp.zeros, (c,), jnp.float32)
        ra_var = self.variable("batch_stats", "var", jnp.ones, (c,), jnp.float32)
        axes = tuple(a for a in range(x.ndim) if a != axis % x.ndim)
        mean = jnp.mean(x, axes)
        shape = [1] * x.ndim
        shape[axis] = c
        if self.stats == "two_pass":
            var = jnp.mean(jnp.square(x - mean.reshape(shape)), axes)
        else:  # one pass, E[x^2] - E[x]^2 (flax.linen's use_fast_variance)
            var = jnp.maximum(jnp.mean(jnp.square(x), axes) - jnp.square(mean), 0.0)
        if not self.is_initializing():
            n = x.size // c
            ra_mean.value = 0.9 * ra_mean.value + 0.1 * mean
            ra_var.value = 0.9 * ra_var.value + 0.1 * var * (n / (n - 1))
        alpha = lax.rsqrt(var + 1e-5) * scale
        return x * alpha.reshape(shape) + (bias - mean * alpha).reshape(shape)


class BasicBlock(nn.Module):
    planes: int
    stride: int
    conv: partial
    norm: partial

    @nn.compact
    def __call__(self, x):
        out = nn.relu(self.norm()(self.conv(self.planes, 3, self.stride)(x)))
        out = self.norm()(self.conv(self.planes, 3)(out))
        if self.stride != 1 or x.shape[-1 if self.conv.keywords["layout"] == "NHWC" else 1] != self.planes:
            x = self.norm()(self.conv(self.planes, 1, self.stride)(x))
        return nn.relu(out + x)


class PreActBlock(nn.Module):
    planes: int
    stride: int
    conv: partial
    norm: partial

    @nn.compact
    def __call__(self, x):
        act = nn.relu(self.norm()(x))
        out = self.conv(self.planes, 3, self.stride)(act)
        out = self.conv(self.planes, 3)(nn.relu(self.norm()(out)))
        cin = x.shape[-1 if self.conv.keywords["layout"] == "NHWC" else 1]
        short = self.conv(self.planes, 1, self.stride)(act) if (self.stride != 1 or cin != self.planes) else x
        return out + short


class Backbone(nn.Module):
    arch: str = "resnet20"
    impl: str = "lax"
    layout: str = "NHWC"
    bn_stats: str = "two_pass"

    @nn.compact
    def __call__(self, x):
        conv = partial(Conv, impl=self.impl, layout=self.layout)
        norm = partial(BatchNorm, stats=self.bn_stats, layout=self.layout)
        if self.layout == "NCHW":
            x = x.transpose(0, 3, 1, 2)
        if self.arch == "resnet20":
            x = nn.relu(norm()(conv(16, 3)(x)))
            block, widths, n = BasicBlock, (16, 32, 64), 3
        else:  # wrn28_2
            x = conv(16, 3)(x)
            block, widths, n = PreActBlock, (32, 64, 128), 4
        for stage, width in enumerate(widths):
            for i in range(n):
                x = block(width, 2 if (i == 0 and stage > 0) else 1, conv, norm)(x)
        if self.arch != "resnet20":
            x = nn.relu(norm()(x))
        return jnp.mean(x, axis=(1, 2) if self.layout == "NHWC" else (2, 3))


class Net(nn.Module):
    arch: str = "resnet20"
    impl: str = "lax"
    layout: str = "NHWC"
    bn_stats: str = "two_pass"

    def setup(self):
        self.backbone = Backbone(self.arch, self.impl, self.layout, self.bn_stats)
        self.sup_head = nn.Dense(10)
        self.self_head = nn.Dense(6)

    def __call__(self, x_sup, x_self=None):
        sup = self.sup_head(self.backbone(x_sup))
        return sup, (None if x_self is None else self.self_head(self.backbone(x_self)))


def proxy_views_jax(x):
    """[img t0..t5] image-major: rot0, rot90, rot180, rot270, left-right, up-down."""
    views = [jnp.rot90(x, k, axes=(1, 2)) for k in range(4)] + [x[:, :, ::-1], x[:, ::-1]]
    return jnp.stack(views, 1).reshape(-1, *x.shape[1:])


def make_jax_step(arch, impl, layout="NHWC", bn_stats="two_pass", mode="sesemi", compiler_options=None):
    model = Net(arch, impl, layout, bn_stats)
    tx = optax.sgd(LR, MOMENTUM, nesterov=True)

    def loss_fn(params, stats, x, y, u):
        variables = {"params": params, "batch_stats": stats}
        if mode == "plain":
            (sup, _), upd = model.apply(variables, x, mutable=["batch_stats"])
            return optax.softmax_cross_entropy_with_integer_labels(sup, y).mean(), upd["batch_stats"]
        views = proxy_views_jax(u)
        targets = jnp.tile(jnp.arange(6), u.shape[0])
        (sup, selfl), upd = model.apply(variables, x, views, mutable=["batch_stats"])
        loss = (optax.softmax_cross_entropy_with_integer_labels(sup, y).mean()
                + optax.softmax_cross_entropy_with_integer_labels(selfl, targets).mean())
        return loss, upd["batch_stats"]

    def step(state, x, y, u):
        params, stats, opt = state
        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, stats, x, y, u)
        updates, opt = tx.update(grads, opt, params)
        return (optax.apply_updates(params, updates), stats, opt), loss

    def init(x, u):
        variables = model.init(jax.random.key(0), x, None if mode == "plain" else proxy_views_jax(u))
        return (variables["params"], variables["batch_stats"], tx.init(variables["params"]))

    return init, jax.jit(step, donate_argnums=0, compiler_options=compiler_options), loss_fn


# ----------------------------------------------------------------------------- PyTorch twin
class TBasic(torch.nn.Module):
    def __init__(self, cin, planes, stride):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(planes)
        self.conv2 = torch.nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(planes)
        self.down = None
        if stride != 1 or cin != planes:
            self.down = torch.nn.Sequential(torch.nn.Conv2d(cin, planes, 1, stride, bias=False),
                                            torch.nn.BatchNorm2d(planes))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + (x if self.down is None else self.down(x)))


class TPreAct(torch.nn.Module):
    def __init__(self, cin, planes, stride):
        super().__init__()
        self.bn1 = torch.nn.BatchNorm2d(cin)
        self.conv1 = torch.nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(planes)
        self.conv2 = torch.nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.short = None
        if stride != 1 or cin != planes:
            self.short = torch.nn.Conv2d(cin, planes, 1, stride, bias=False)

    def forward(self, x):
        act = torch.relu(self.bn1(x))
        out = self.conv2(torch.relu(self.bn2(self.conv1(act))))
        return out + (x if self.short is None else self.short(act))


class TBackbone(torch.nn.Module):
    def __init__(self, arch):
        super().__init__()
        resnet = arch == "resnet20"
        block, widths, n = (TBasic, (16, 32, 64), 3) if resnet else (TPreAct, (32, 64, 128), 4)
        stem = [torch.nn.Conv2d(3, 16, 3, 1, 1, bias=False)]
        if resnet:
            stem += [torch.nn.BatchNorm2d(16), torch.nn.ReLU()]
        layers, cin = [], 16
        for stage, width in enumerate(widths):
            for i in range(n):
                layers.append(block(cin, width, 2 if (i == 0 and stage > 0) else 1))
                cin = width
        tail = [] if resnet else [torch.nn.BatchNorm2d(cin), torch.nn.ReLU()]
        self.body = torch.nn.Sequential(*stem, *layers, *tail)

    def forward(self, x):
        return self.body(x).mean((2, 3))


class TNet(torch.nn.Module):
    def __init__(self, arch):
        super().__init__()
        self.backbone = TBackbone(arch)
        width = 64 if arch == "resnet20" else 128
        self.sup_head = torch.nn.Linear(width, 10)
        self.self_head = torch.nn.Linear(width, 6)

    def forward(self, x_sup, x_self=None):
        sup = self.sup_head(self.backbone(x_sup))
        return sup, (None if x_self is None else self.self_head(self.backbone(x_self)))


def proxy_views_torch(x):
    views = [torch.rot90(x, k, dims=(2, 3)) for k in range(4)] + [x.flip(3), x.flip(2)]
    return torch.stack(views, 1).reshape(-1, *x.shape[1:])


def make_torch_step(arch, variant, mode):
    model = TNet(arch)
    fmt = torch.channels_last if variant == "channels_last" else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, nesterov=True)
    ce = torch.nn.functional.cross_entropy

    def step(x, y, u):
        x = x.contiguous(memory_format=fmt)
        opt.zero_grad(set_to_none=True)
        if mode == "plain":
            loss = ce(model(x)[0], y)
        else:
            views = proxy_views_torch(u).contiguous(memory_format=fmt)
            targets = torch.arange(6).repeat(u.shape[0])
            sup, selfl = model(x, views)
            loss = ce(sup, y) + ce(selfl, targets)
        loss.backward()
        opt.step()
        return loss

    return step


# ----------------------------------------------------------------------------- harness
def batch_arrays(mode, rng):
    n_sup, n_unl = (128, 0) if mode == "plain" else (96, 16)
    x = rng.standard_normal((n_sup, 32, 32, 3), dtype=np.float32)
    y = rng.integers(0, 10, n_sup)
    u = rng.standard_normal((max(n_unl, 1), 32, 32, 3), dtype=np.float32)
    images = n_sup + 6 * n_unl
    return x, y, u, images


def build_runners(args, x, y, u):
    """name -> zero-arg callable running one step and waiting for its result."""
    runners = {}
    tx_, ty, tu = (torch.from_numpy(x.transpose(0, 3, 1, 2).copy()), torch.from_numpy(y),
                   torch.from_numpy(u.transpose(0, 3, 1, 2).copy()))
    for variant in args.torch:
        tstep = make_torch_step(args.model, variant, args.mode)
        runners[f"torch_{variant}"] = partial(tstep, tx_, ty, tu)
    jx, jy, ju = jnp.asarray(x), jnp.asarray(y, jnp.int32), jnp.asarray(u)
    for name in args.variants:
        impl, layout, bn, opts = parse_variant(name)
        init, step, _ = make_jax_step(args.model, impl, layout, bn, args.mode, opts)
        box = [init(jx, ju)]

        def run(step=step, box=box):
            box[0], loss = step(box[0], jx, jy, ju)
            return loss.block_until_ready()

        runners[name] = run
    return runners


# Per-executable XLA options. jaxlib 0.10's CPU backend hands convolutions (and dots) to
# YNNPACK by default; its weight-gradient convolution (a 32x32 window over the batch) is very
# slow. '' turns every YNNPACK fusion off, so convs go back to XLA's Eigen kernels.
XLA_OPTION_SETS = {
    "noynn": {"xla_cpu_experimental_ynn_fusion_type": ""},
    "ynndot": {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"},
}


def parse_variant(name):
    """'<impl>[+nchw][+onepass][+noynn|+ynndot]' -> (impl, layout, bn_stats, compiler_options)."""
    parts = name.split("+")
    layout = "NCHW" if "nchw" in parts else "NHWC"
    bn = "one_pass" if "onepass" in parts else "two_pass"
    opts = {}
    for part in parts[1:]:
        opts.update(XLA_OPTION_SETS.get(part, {}))
    return parts[0], layout, bn, opts or None


def measure(runners, images, warmup, repeats, iters):
    for run in runners.values():
        for _ in range(warmup):
            run()
    times = {name: [] for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            t0 = time.perf_counter()
            for _ in range(iters):
                run()
            times[name].append((time.perf_counter() - t0) / iters)
    rows = []
    base = times.get("torch_eager")
    for name, ts in times.items():
        row = {"variant": name, "images_per_s": images / statistics.median(ts),
               "step_ms": 1e3 * statistics.median(ts)}
        if base:  # ratio of per-repeat times: both sides saw the same load
            row["ratio_to_torch_eager"] = statistics.median(b / t for b, t in zip(base, ts))
        rows.append(row)
    return rows


def check_grads(args, x, y, u):
    """max |grad - reference| over all parameters at float32, same params and batch.

    Two references: the plain lax variant at float32 and the lax variant at float64 (the
    float32 rounding noise of lax itself, through 20 BatchNorm backwards, sets the scale).
    """
    jax.config.update("jax_enable_x64", True)
    jx, jy, ju = jnp.asarray(x), jnp.asarray(y, jnp.int32), jnp.asarray(u)
    init, _, loss_fn = make_jax_step(args.model, "lax", mode=args.mode)
    params, stats, _ = init(jx, ju)
    f64 = lambda t: jax.tree.map(lambda a: a.astype(jnp.float64), t)
    ref64 = jax.grad(lambda p: loss_fn(p, f64(stats), jx.astype(jnp.float64), jy, ju.astype(jnp.float64))[0])(f64(params))
    ref32 = None
    rows = []
    for name in ["lax"] + [v for v in args.variants if v != "lax"]:
        impl, layout, bn, _ = parse_variant(name)
        _, _, loss_fn = make_jax_step(args.model, impl, layout, bn, args.mode)
        grads = jax.jit(jax.grad(lambda p: loss_fn(p, stats, jx, jy, ju)[0]))(params)
        ref32 = grads if ref32 is None else ref32
        diff = lambda a, b: max(float(jnp.max(jnp.abs(p - q))) for p, q in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
        rows.append({"variant": name, "max_abs_diff_vs_lax_f32": diff(grads, ref32),
                     "max_abs_diff_vs_lax_f64": diff(grads, ref64),
                     "max_abs_grad": max(float(jnp.max(jnp.abs(a))) for a in jax.tree.leaves(ref64))})
    return rows


def conv_micro(args):
    """Per-conv ms: forward, input-grad, weight-grad for each 3x3 conv shape of ResNet-20."""
    rows = []
    shapes = [(32, 16, 16, 1), (32, 16, 32, 2), (16, 32, 32, 1), (16, 32, 64, 2), (8, 64, 64, 1)]
    rng = np.random.default_rng(0)
    for h, ci, co, s in shapes:
        x = jnp.asarray(rng.standard_normal((args.conv_batch, h, h, ci), dtype=np.float32))
        w = jnp.asarray(rng.standard_normal((3, 3, ci, co), dtype=np.float32) * 0.1)
        g = jnp.asarray(rng.standard_normal(conv_lax(x, w, s, 1).shape, dtype=np.float32))
        noynn = XLA_OPTION_SETS["noynn"]
        fns = {
            "jax_fwd": jax.jit(lambda x, w: conv_lax(x, w, s, 1)),
            "jax_fwd_noynn": jax.jit(lambda x, w: conv_lax(x, w, s, 1), compiler_options=noynn),
            "jax_dx": jax.jit(lambda x, w, g: jax.vjp(lambda a: conv_lax(a, w, s, 1), x)[1](g)[0]),
            "jax_dx_noynn": jax.jit(lambda x, w, g: jax.vjp(lambda a: conv_lax(a, w, s, 1), x)[1](g)[0],
                                    compiler_options=noynn),
            "jax_dw_lax": jax.jit(lambda x, w, g: jax.vjp(lambda b: conv_lax(x, b, s, 1), w)[1](g)[0]),
            "jax_dw_lax_noynn": jax.jit(lambda x, w, g: jax.vjp(lambda b: conv_lax(x, b, s, 1), w)[1](g)[0],
                                        compiler_options=noynn),
            "jax_dw_dot": jax.jit(lambda x, w, g: wgrad_dot(x, g, w.shape, s, 1)),
            "jax_dw_im2col": jax.jit(lambda x, w, g: wgrad_im2col(x, g, w.shape, s, 1)),
        }
        tx = torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy())
        tw = torch.from_numpy(np.asarray(w).transpose(3, 2, 0, 1).copy())
        tg = torch.from_numpy(np.asarray(g).transpose(0, 3, 1, 2).copy())
        tfns = {
            "torch_fwd": lambda: torch.nn.functional.conv2d(tx, tw, stride=s, padding=1),
            "torch_dx": lambda: torch.nn.grad.conv2d_input(tx.shape, tw, tg, stride=s, padding=1),
            "torch_dw": lambda: torch.nn.grad.conv2d_weight(tx, tw.shape, tg, stride=s, padding=1),
        }
        calls = {k: (partial(f, x, w) if k.startswith("jax_fwd") else partial(f, x, w, g)) for k, f in fns.items()}
        calls = {k: (lambda c=c: jax.block_until_ready(c())) for k, c in calls.items()}
        calls.update(tfns)
        with torch.no_grad():
            res = measure(calls, 1, 2, args.repeats, args.iters)
        row = {"shape": f"{h}x{h} {ci}->{co} s{s}"}
        row.update({r["variant"]: r["step_ms"] for r in res})
        rows.append(row)
    return rows


def markdown(rows):
    keys = list(rows[0])
    fmt = lambda v: f"{v:.3g}" if isinstance(v, float) and abs(v) < 1e-2 else (f"{v:.2f}" if isinstance(v, float) else str(v))
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(fmt(r.get(k, "")) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet20", choices=["resnet20", "wrn28_2"])
    p.add_argument("--mode", default="sesemi", choices=["plain", "sesemi"])
    p.add_argument("--variants", default="lax,wgrad_dot",
                   help=f"comma list of <impl>[+nchw][+onepass], impl in {sorted(CONV_IMPLS)}")
    p.add_argument("--torch", default="eager", help="comma list from eager,channels_last ('' for none)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--iters", type=int, default=3, help="steps per timed repeat")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--convs", action="store_true", help="per-conv micro-benchmark instead")
    p.add_argument("--conv-batch", type=int, default=128)
    p.add_argument("--check", action="store_true", help="gradient agreement with lax instead")
    p.add_argument("--json", help="write the rows here")
    args = p.parse_args()
    args.variants = [v for v in args.variants.split(",") if v]
    args.torch = [v for v in args.torch.split(",") if v]
    torch.set_num_threads(args.threads)
    x, y, u, images = batch_arrays(args.mode, np.random.default_rng(0))
    if args.convs:
        rows = conv_micro(args)
    elif args.check:
        rows = check_grads(args, x, y, u)
    else:
        rows = measure(build_runners(args, x, y, u), images, args.warmup, args.repeats, args.iters)
    print(f"model={args.model} mode={args.mode} jax={jax.__version__} torch={torch.__version__}")
    print(markdown(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
