"""PyTorch reference for the experiment package's tests.

Usage: mnist_reference.py CHECKPOINT IMAGES LABELS ITERATIONS

Loads a checkpoint written by `convbn-diag pretrain` with
torch.load(weights_only=True), rebuilds the network from the stored layer
list in float64, and prints as JSON, for the N×1×28×28 float64 images and
int64 labels in the two raw little-endian files:
  eval_logits    logits with BatchNorm in eval mode
  deploy_logits  logits after torch.nn.utils.fusion.fuse_conv_bn_eval
  loss           mean cross-entropy in eval mode
  lambda_eval    λ_max of the loss Hessian in the conv weights W
  lambda_deploy  λ_max of the loss Hessian in the fused weights W'
λ_max comes from ITERATIONS power-iteration steps with exact
Hessian-vector products (double backward).
"""
import json
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.fusion import fuse_conv_bn_eval


def build(path):
    obj = torch.load(path, weights_only=True)
    sd, meta = obj["state_dict"], obj["convbn_diag_metadata"]
    layers = []
    root = nn.Module()
    for spec in json.loads(meta["convbn_diag.layers"]):
        name, kind = spec["name"], spec["type"]
        if kind == "Conv2d":
            w = sd[name + ".weight"]
            m = nn.Conv2d(w.shape[1], w.shape[0], tuple(w.shape[2:]), stride=spec["stride"],
                          padding=spec["padding"], dilation=spec["dilation"], bias=False)
        elif kind == "BatchNorm2d":
            m = nn.BatchNorm2d(sd[name + ".weight"].shape[0], eps=spec["eps"], momentum=spec["momentum"])
        elif kind == "ReLU":
            m = nn.ReLU()
        elif kind == "MaxPool2d":
            m = nn.MaxPool2d(2)
        elif kind == "AdaptiveAvgPool2d":
            m = nn.AdaptiveAvgPool2d(1)
        elif kind == "Flatten":
            m = nn.Flatten()
        elif kind == "Linear":
            w = sd[name + ".weight"]
            m = nn.Linear(w.shape[1], w.shape[0])
        else:
            raise ValueError("unexpected layer " + kind)
        parent = root
        parts = name.split(".")
        for p in parts[:-1]:
            if not hasattr(parent, p):
                parent.add_module(p, nn.Module())
            parent = getattr(parent, p)
        parent.add_module(parts[-1], m)
        layers.append((name, kind, m))
    root.load_state_dict(sd, strict=True)
    root.double().eval()
    return layers


def forward(layers, x):
    for _, _, m in layers:
        x = m(x)
    return x


def fuse(layers):
    fused, i = [], 0
    while i < len(layers):
        name, kind, m = layers[i]
        if kind == "Conv2d" and i + 1 < len(layers) and layers[i + 1][1] == "BatchNorm2d":
            fused.append((name, "Conv2d", fuse_conv_bn_eval(m, layers[i + 1][2])))
            i += 2
            continue
        fused.append(layers[i])
        i += 1
    return fused


def lambda_max(layers, x, y, iterations):
    params = [m.weight for _, kind, m in layers if kind == "Conv2d"]
    for p in params:
        p.requires_grad_(True)
    loss = F.cross_entropy(forward(layers, x), y)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    gen = torch.Generator().manual_seed(0)
    v = [torch.randn(p.shape, generator=gen, dtype=torch.float64) for p in params]
    lam = 0.0
    for _ in range(iterations):
        norm = torch.sqrt(sum((t * t).sum() for t in v))
        v = [t / norm for t in v]
        hv = torch.autograd.grad(grads, params, grad_outputs=v, retain_graph=True)
        lam = float(sum((a * b).sum() for a, b in zip(hv, v)))
        v = [t.detach() for t in hv]
    return lam


def main():
    path, images, labels, iterations = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    x = torch.from_numpy(np.fromfile(images, dtype="<f8").reshape(-1, 1, 28, 28).copy())
    y = torch.from_numpy(np.fromfile(labels, dtype="<i8").copy())
    layers = build(path)
    deploy = fuse(layers)
    with torch.no_grad():
        eval_logits = forward(layers, x)
        deploy_logits = forward(deploy, x)
        loss = F.cross_entropy(eval_logits, y)
    out = {
        "eval_logits": eval_logits.reshape(-1).tolist(),
        "deploy_logits": deploy_logits.reshape(-1).tolist(),
        "loss": float(loss),
        "lambda_eval": lambda_max(layers, x, y, iterations),
        "lambda_deploy": lambda_max(deploy, x, y, iterations),
    }
    json.dump(out, sys.stdout)


main()
