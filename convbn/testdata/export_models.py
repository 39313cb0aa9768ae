"""Export small ConvBN models to ONNX and TorchScript for the Go pairing tests.

Usage: export_models.py OUTDIR

Writes these files to OUTDIR, plus expected.json describing each one:
  net_train.onnx      the Net below, exported with TrainingMode.TRAINING so
                      that BatchNormalization nodes stay in the graph
  mobilenet_train.onnx  torchvision mobilenet_v3_small, same export
  mobilenet_eval.onnx   the same model exported in eval mode, where the
                      exporter folds every BatchNorm into its conv
  seq.jit             a Sequential ConvBN stack (seq_net below), compiled
                      with torch.jit.script

expected.json maps each file name to {"fused": bool, "pairs": [...]}, one
entry per Conv→BatchNorm pair from the model's own structure (not from the
exported file): conv and BatchNorm names, ω = γ/√(σ² + ε) per channel as
float.hex() computed in float64 from the module's state after export, and
the BatchNorm's eps and momentum and the conv's groups, stride, padding,
dilation and transposed flag as PyTorch stores them.

A training-mode export runs the model forward in training mode, which
updates the running statistics; the exported initializers hold the updated
values, so ω is computed after the export.
"""

import json
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision


class Net(nn.Module):
    """One of each case the graph rule must tell apart."""

    def __init__(self):
        super().__init__()
        # Conv → BN with non-default eps and momentum: a pair.
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(8, eps=1e-3, momentum=0.03)
        # Depthwise, dilated conv with a bias → BN: a pair.
        self.dw = nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=8)
        self.bn1 = nn.BatchNorm2d(8)
        # Conv whose output also feeds a residual add: not fusible.
        self.shared = nn.Conv2d(8, 8, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        # Grouped transposed conv → BN: a pair with 2 × 2 = 4 channels.
        self.up = nn.ConvTranspose2d(8, 4, 2, stride=2, groups=2)
        self.bn3 = nn.BatchNorm2d(4, momentum=0.05)
        # Conv → ReLU → BN: not a pair.
        self.post = nn.Conv2d(4, 4, 3, padding=1)
        self.bn4 = nn.BatchNorm2d(4)

    def forward(self, x):
        x = F.relu(self.bn0(self.stem(x)))
        x = F.relu(self.bn1(self.dw(x)))
        y = self.shared(x)
        x = self.bn2(y) + y
        x = self.bn3(self.up(x))
        return self.bn4(F.relu(self.post(x)))


NET_PAIRS = [("stem", "bn0"), ("dw", "bn1"), ("up", "bn3")]


def seq_net():
    """A Sequential stack: a TorchScript archive keeps the module tree but
    not the data flow, so the registration order must match the forward
    order for pairing to be right."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(8, eps=1e-3, momentum=0.03),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=8),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 1),
        nn.ReLU(),
        nn.BatchNorm2d(8),
        nn.ConvTranspose2d(8, 4, 2, stride=2, groups=2),
        nn.BatchNorm2d(4, momentum=0.05),
    )


def randomize(model, seed):
    """Give every BatchNorm non-trivial statistics and affine parameters."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.weight.data = torch.randn(n, generator=g)
            m.bias.data = torch.randn(n, generator=g)
            m.running_mean = torch.randn(n, generator=g)
            m.running_var = torch.rand(n, generator=g) * 3 + 0.01


def sequential_pairs(model):
    """Conv→BatchNorm pairs of consecutive Sequential children."""
    pairs = []
    for name, m in model.named_modules():
        if not isinstance(m, nn.Sequential):
            continue
        children = list(m.named_children())
        for (a, ma), (b, mb) in zip(children, children[1:]):
            if isinstance(ma, (nn.Conv2d, nn.ConvTranspose2d)) and isinstance(mb, nn.BatchNorm2d):
                prefix = name + "." if name else ""
                pairs.append((prefix + a, prefix + b))
    return pairs


def describe(model, pairs):
    modules = dict(model.named_modules())
    out = []
    for conv_name, bn_name in pairs:
        conv, bn = modules[conv_name], modules[bn_name]
        omega = (bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)).tolist()
        out.append({
            "conv": conv_name,
            "bn": bn_name,
            "omega": [float(v).hex() for v in omega],
            "eps": bn.eps,
            "momentum": bn.momentum,
            "groups": conv.groups,
            "stride": list(conv.stride),
            "padding": list(conv.padding),
            "dilation": list(conv.dilation),
            "transposed": conv.transposed,
        })
    return out


def export_onnx(model, x, path, training):
    kwargs = dict(opset_version=13, do_constant_folding=False)
    if training:
        kwargs["training"] = torch.onnx.TrainingMode.TRAINING
    model.eval()
    torch.onnx.export(model, x, path, **kwargs)
    model.eval()


def main():
    out = sys.argv[1]
    torch.manual_seed(0)
    expected = {}

    net = Net()
    randomize(net, 1)
    export_onnx(net, torch.randn(2, 3, 16, 16), os.path.join(out, "net_train.onnx"), True)
    expected["net_train.onnx"] = {"fused": False, "pairs": describe(net, NET_PAIRS)}

    seq = seq_net()
    randomize(seq, 2)
    torch.jit.script(seq.eval()).save(os.path.join(out, "seq.jit"))
    expected["seq.jit"] = {"fused": False, "pairs": describe(seq, sequential_pairs(seq))}

    mobile = torchvision.models.mobilenet_v3_small(num_classes=10)
    randomize(mobile, 3)
    x = torch.randn(2, 3, 64, 64)
    export_onnx(mobile, x, os.path.join(out, "mobilenet_train.onnx"), True)
    expected["mobilenet_train.onnx"] = {"fused": False, "pairs": describe(mobile, sequential_pairs(mobile))}
    export_onnx(mobile, x, os.path.join(out, "mobilenet_eval.onnx"), False)
    expected["mobilenet_eval.onnx"] = {"fused": True, "pairs": []}

    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f)


main()
