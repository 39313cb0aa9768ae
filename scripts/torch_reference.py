#!/usr/bin/python3
"""Write PyTorch reference values for convbn-diag's ConvBN engine tests.

Run with Debian's interpreter, which has torch 1.13:

    /usr/bin/python3 scripts/torch_reference.py [OUT_DIR]

OUT_DIR defaults to the repository root. The script writes
nn/testdata/torch_reference.json (conv and BatchNorm kernels),
nn/testdata/torch_optim_reference.json (three steps of SGD, Adam and
AdamW) and convbn/testdata/torch_reference.json (ConvBN blocks in the
four modes).
Everything is float64 and seeded, so a rerun with the same torch version
writes identical files; the Go tests check that.

Each tensor is stored as {"shape": [...], "data": [...]} in row-major
order. The loss of every case is L = sum(out * dout) with a random dout,
so the gradient of the output is dout.
"""

import json
import os
import sys

import torch
import torch.nn.functional as F
from torch.nn.utils.fusion import fuse_conv_bn_eval

torch.set_default_dtype(torch.float64)


def tensor(t):
    t = t.detach().contiguous()
    return {"shape": list(t.shape), "data": t.reshape(-1).tolist()}


def rand(gen, *shape, low=-1.0, high=1.0):
    return torch.rand(*shape, generator=gen) * (high - low) + low


CONV_CASES = [
    # name, x shape, out channels, kernel, stride, padding, dilation, groups, bias
    ("plain_3x3", (2, 3, 5, 5), 4, (3, 3), (1, 1), (1, 1), (1, 1), 1, True),
    ("no_bias", (2, 3, 5, 5), 4, (3, 3), (1, 1), (0, 0), (1, 1), 1, False),
    ("stride2", (2, 3, 7, 6), 4, (3, 3), (2, 2), (1, 1), (1, 1), 1, True),
    ("dilation2", (1, 2, 7, 7), 3, (3, 3), (1, 1), (2, 2), (2, 2), 1, True),
    ("groups2", (2, 4, 5, 5), 6, (3, 3), (1, 1), (1, 1), (1, 1), 2, False),
    ("depthwise", (2, 4, 6, 6), 4, (3, 3), (1, 1), (1, 1), (1, 1), 4, True),
    ("depthwise_mult2_stride2", (1, 3, 7, 7), 6, (3, 3), (2, 2), (1, 1), (1, 1), 3, False),
    ("pointwise", (2, 4, 4, 4), 5, (1, 1), (1, 1), (0, 0), (1, 1), 1, True),
    ("rect_asym", (1, 2, 6, 5), 3, (2, 3), (2, 1), (0, 1), (1, 2), 1, True),
]


def conv_cases(gen):
    out = []
    for name, xs, co, k, stride, pad, dil, groups, bias in CONV_CASES:
        x = rand(gen, *xs).requires_grad_()
        w = rand(gen, co, xs[1] // groups, *k).requires_grad_()
        b = rand(gen, co).requires_grad_() if bias else None
        y = F.conv2d(x, w, b, stride=stride, padding=pad, dilation=dil, groups=groups)
        dy = rand(gen, *y.shape)
        (y * dy).sum().backward()
        case = {
            "name": name, "stride": list(stride), "padding": list(pad),
            "dilation": list(dil), "groups": groups,
            "x": tensor(x), "weight": tensor(w), "y": tensor(y), "dy": tensor(dy),
            "dx": tensor(x.grad), "dweight": tensor(w.grad),
        }
        if bias:
            case["bias"] = tensor(b)
            case["dbias"] = tensor(b.grad)
        out.append(case)
    return out


def bn_state(bn):
    s = {
        "running_mean": tensor(bn.running_mean),
        "running_var": tensor(bn.running_var),
        "num_batches_tracked": int(bn.num_batches_tracked),
    }
    return s


def bn_train_cases(gen):
    out = []
    for name, momentum, affine in [("momentum0.1", 0.1, True), ("cumulative", None, True),
                                   ("non_affine", 0.1, False)]:
        c = 3
        bn = torch.nn.BatchNorm2d(c, eps=1e-5, momentum=momentum, affine=affine)
        with torch.no_grad():
            bn.running_mean.copy_(rand(gen, c))
            bn.running_var.copy_(rand(gen, c, low=0.5, high=2.0))
            if affine:
                bn.weight.copy_(rand(gen, c, low=0.5, high=1.5))
                bn.bias.copy_(rand(gen, c))
        case = {"name": name, "momentum": momentum, "affine": affine, "eps": 1e-5,
                "initial": bn_state(bn)}
        if affine:
            case["gamma"] = tensor(bn.weight)
            case["beta"] = tensor(bn.bias)
        bn.train()
        steps = []
        for step in range(2):
            y = (rand(gen, 2, c, 3, 4) * 2 + 0.5).requires_grad_()
            z = bn(y)
            dz = rand(gen, *z.shape)
            if affine:
                bn.weight.grad = None
                bn.bias.grad = None
            (z * dz).sum().backward()
            s = {"y": tensor(y), "z": tensor(z), "dz": tensor(dz), "dy": tensor(y.grad),
                 "after": bn_state(bn)}
            if affine:
                s["dgamma"] = tensor(bn.weight.grad)
                s["dbeta"] = tensor(bn.bias.grad)
            steps.append(s)
        case["steps"] = steps
        out.append(case)
    return out


def bn_eval_cases(gen):
    out = []
    for name, affine in [("affine", True), ("non_affine", False)]:
        c = 3
        bn = torch.nn.BatchNorm2d(c, eps=1e-5, affine=affine)
        with torch.no_grad():
            bn.running_mean.copy_(rand(gen, c))
            bn.running_var.copy_(rand(gen, c, low=0.5, high=2.0))
            if affine:
                bn.weight.copy_(rand(gen, c, low=0.5, high=1.5))
                bn.bias.copy_(rand(gen, c))
        bn.eval()
        y = rand(gen, 2, c, 3, 3).requires_grad_()
        z = bn(y)
        dz = rand(gen, *z.shape)
        (z * dz).sum().backward()
        case = {"name": name, "affine": affine, "eps": 1e-5, "state": bn_state(bn),
                "y": tensor(y), "z": tensor(z), "dz": tensor(dz), "dy": tensor(y.grad)}
        if affine:
            case["gamma"] = tensor(bn.weight)
            case["beta"] = tensor(bn.bias)
            case["dgamma"] = tensor(bn.weight.grad)
            case["dbeta"] = tensor(bn.bias.grad)
        out.append(case)
    return out


OPTIM_CASES = [
    # name, constructor
    ("sgd", lambda p: torch.optim.SGD(p, lr=0.1)),
    ("sgd_momentum_decay", lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01)),
    ("adam", lambda p: torch.optim.Adam(p, lr=0.01)),
    ("adam_eps0_decay", lambda p: torch.optim.Adam(p, lr=0.01, eps=0.0, weight_decay=0.05)),
    ("adamw", lambda p: torch.optim.AdamW(p, lr=0.01, betas=(0.8, 0.99), weight_decay=0.1)),
]


def optim_cases(gen):
    out = []
    for name, make in OPTIM_CASES:
        p = torch.nn.Parameter(rand(gen, 6))
        opt = make([p])
        case = {"name": name, "initial": tensor(p), "grads": [], "after": []}
        for _ in range(3):
            g = rand(gen, 6)
            p.grad = g.clone()
            opt.step()
            case["grads"].append(tensor(g))
            case["after"].append(tensor(p))
        out.append(case)
    return out


BLOCK_CASES = [
    # name, x shape, out channels, kernel, stride, padding, dilation, groups, conv bias, affine
    ("plain", (2, 3, 5, 5), 4, 3, 1, 1, 1, 1, False, True),
    ("bias_stride2", (2, 3, 6, 6), 4, 3, 2, 1, 1, 1, True, True),
    ("depthwise_dilated", (2, 4, 6, 6), 4, 3, 1, 2, 2, 4, True, True),
    ("non_affine", (2, 3, 4, 4), 2, 3, 1, 1, 1, 1, True, False),
]


def block_cases(gen):
    out = []
    for name, xs, co, k, stride, pad, dil, groups, bias, affine in BLOCK_CASES:
        conv = torch.nn.Conv2d(xs[1], co, k, stride=stride, padding=pad, dilation=dil,
                               groups=groups, bias=bias)
        bn = torch.nn.BatchNorm2d(co, eps=1e-5, affine=affine)
        with torch.no_grad():
            conv.weight.copy_(rand(gen, *conv.weight.shape))
            if bias:
                conv.bias.copy_(rand(gen, co))
            bn.running_mean.copy_(rand(gen, co))
            bn.running_var.copy_(rand(gen, co, low=0.2, high=3.0))
            if affine:
                bn.weight.copy_(rand(gen, co, low=0.3, high=2.0))
                bn.bias.copy_(rand(gen, co))
        conv.eval()
        bn.eval()
        x = rand(gen, *xs)
        case = {
            "name": name, "stride": [stride, stride], "padding": [pad, pad],
            "dilation": [dil, dil], "groups": groups, "conv_bias": bias, "affine": affine,
            "eps": 1e-5, "x": tensor(x), "weight": tensor(conv.weight),
            "running_mean": tensor(bn.running_mean), "running_var": tensor(bn.running_var),
        }
        if bias:
            case["bias"] = tensor(conv.bias)
        if affine:
            case["gamma"] = tensor(bn.weight)
            case["beta"] = tensor(bn.bias)

        # Eval: conv then the frozen BatchNorm, gradients by autograd.
        xe = x.clone().requires_grad_()
        z = bn(conv(xe))
        dz = rand(gen, *z.shape)
        (z * dz).sum().backward()
        case["z"] = tensor(z)
        case["dz"] = tensor(dz)
        case["eval"] = grads(xe, conv, bn, bias, affine)

        # Tune: fold W, b, γ, β into W', b' inside the graph, then one conv.
        conv.zero_grad()
        bn.zero_grad()
        xt = x.clone().requires_grad_()
        s = torch.rsqrt(bn.running_var + bn.eps)
        gamma = bn.weight if affine else torch.ones(co)
        beta = bn.bias if affine else torch.zeros(co)
        omega = gamma * s
        wf = conv.weight * omega.reshape(-1, 1, 1, 1)
        cb = conv.bias if bias else torch.zeros(co)
        bf = beta + omega * (cb - bn.running_mean)
        zt = F.conv2d(xt, wf, bf, stride=stride, padding=pad, dilation=dil, groups=groups)
        (zt * dz).sum().backward()
        case["tune_z"] = tensor(zt)
        case["tune"] = grads(xt, conv, bn, bias, affine)

        # Deploy: PyTorch's own fold, then gradients of W' and b'.
        fused = fuse_conv_bn_eval(conv, bn)
        xd = x.clone().requires_grad_()
        zd = fused(xd)
        (zd * dz).sum().backward()
        case["deploy"] = {
            "fused_weight": tensor(fused.weight), "fused_bias": tensor(fused.bias),
            "z": tensor(zd), "dx": tensor(xd.grad),
            "dweight": tensor(fused.weight.grad), "dbias": tensor(fused.bias.grad),
        }

        # Train: batch statistics, running statistics after the step.
        conv.zero_grad()
        bn.zero_grad()
        conv.train()
        bn.train()
        xr = x.clone().requires_grad_()
        zr = bn(conv(xr))
        (zr * dz).sum().backward()
        case["train"] = grads(xr, conv, bn, bias, affine)
        case["train"]["z"] = tensor(zr)
        case["train"]["after"] = bn_state(bn)
        out.append(case)
    return out


def grads(x, conv, bn, bias, affine):
    g = {"dx": tensor(x.grad), "dweight": tensor(conv.weight.grad)}
    if bias:
        g["dbias"] = tensor(conv.bias.grad)
    if affine:
        g["dgamma"] = tensor(bn.weight.grad)
        g["dbeta"] = tensor(bn.bias.grad)
    return g


def write(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, separators=(",", ":"))
        f.write("\n")


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    gen = torch.Generator().manual_seed(20240501)
    meta = {"torch": torch.__version__, "dtype": "float64",
            "generator": "scripts/torch_reference.py"}
    write(os.path.join(root, "nn", "testdata", "torch_reference.json"), {
        "meta": meta,
        "conv": conv_cases(gen),
        "bn_train": bn_train_cases(gen),
        "bn_eval": bn_eval_cases(gen),
    })
    optim_gen = torch.Generator().manual_seed(20240502)
    write(os.path.join(root, "nn", "testdata", "torch_optim_reference.json"), {
        "meta": meta,
        "optim": optim_cases(optim_gen),
    })
    write(os.path.join(root, "convbn", "testdata", "torch_reference.json"), {
        "meta": meta,
        "blocks": block_cases(gen),
    })


if __name__ == "__main__":
    main()
