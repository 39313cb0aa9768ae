#!/usr/bin/python3
"""Write torchvision checkpoints and their exact Conv→BatchNorm pairs.

Usage: /usr/bin/python3 scripts/torchvision_checkpoints.py OUTDIR

For each architecture this writes, with random weights (nothing is
downloaded):

  OUTDIR/NAME.zip.pth     state dict, torch.save zip format
  OUTDIR/NAME.legacy.pth  state dict, legacy format
                          (_use_new_zipfile_serialization=False)
  OUTDIR/NAME.module.pth  the whole pickled nn.Module (torch.save(model)),
                          for the architectures listed in WHOLE_MODULE

and OUTDIR/pairs.json, which maps NAME to

  files:  the checkpoint file names written for it
  pairs:  {conv module name: BatchNorm module name}, from torch.fx
  convs:  {conv module name: {"groups": G, "transposed": bool,
           "out_channels": C}} for every convolution
  batchnorms: {BatchNorm module name: {"eps": ε, "momentum": m or null}}
  state_dict_ambiguous: [conv names of fx pairs that a state dict cannot
          settle: a grouped transposed conv, whose BatchNorm size equals
          neither weight dimension because the file does not store groups]

A pair is a call_module node of a Conv type whose only user is a
call_module node of a BatchNorm type, in the graph that
torch.fx.symbolic_trace records. The BatchNorm running statistics, γ and β
are randomized so that ω = γ/√(σ²+ε) is not 1.

Tested with torch 1.13 and torchvision 0.14 (Debian packages).
"""

import dis
import inspect
import json
import os
import sys
import time

import torch
import torch.fx
import torch.nn as nn
import torchvision.models as tvm
from torchvision.models import shufflenetv2

CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d,
              nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)

# Architectures also saved as a whole pickled module.
WHOLE_MODULE = {"resnet18", "mobilenet_v2", "densenet121", "convtranspose_small"}


def small_alexnet():
    """AlexNet features with a small classifier (no BatchNorm)."""
    model = tvm.alexnet(num_classes=10)
    model.classifier = nn.Sequential(
        nn.Dropout(), nn.Linear(256 * 6 * 6, 64), nn.ReLU(inplace=True),
        nn.Linear(64, 10))
    return model


def small_vgg11_bn():
    """VGG-11-BN features with a small classifier; the pairs are all in
    features, so the 100M-parameter classifier is not needed."""
    model = tvm.vgg11_bn(num_classes=10, init_weights=False)
    model.classifier = nn.Sequential(
        nn.Linear(512 * 7 * 7, 16), nn.ReLU(inplace=True), nn.Linear(16, 10))
    return model


def small_resnext50():
    """ResNeXt-50 (32 groups) with 2 channels per group instead of 4."""
    return tvm.resnet.ResNet(tvm.resnet.Bottleneck, [3, 4, 6, 3],
                             groups=32, width_per_group=2, num_classes=10)


def convtranspose_small():
    """A generator-style stack that torchvision lacks: transposed convs
    (one grouped, whose BatchNorm size matches neither weight dimension),
    a Conv→ReLU→BatchNorm block and a Conv1d→BatchNorm1d pair."""
    return nn.Sequential(
        nn.ConvTranspose2d(16, 32, 4, stride=2, padding=1),           # 0
        nn.BatchNorm2d(32),                                            # 1
        nn.ReLU(),                                                     # 2
        nn.ConvTranspose2d(32, 8, 4, stride=2, padding=1, groups=2),   # 3
        nn.BatchNorm2d(8),                                             # 4
        nn.ReLU(),                                                     # 5
        nn.Conv2d(8, 8, 3, padding=1),                                 # 6
        nn.ReLU(),                                                     # 7
        nn.BatchNorm2d(8),                                             # 8
        nn.Flatten(2),                                                 # 9
        nn.Conv1d(8, 12, 3, padding=1, bias=False),                    # 10
        nn.BatchNorm1d(12, eps=1e-3, momentum=None),                   # 11
    )


ARCHITECTURES = [
    ("resnet18", lambda: tvm.resnet18(num_classes=10)),
    ("resnext50_small", small_resnext50),
    ("densenet121", lambda: tvm.densenet121(num_classes=10)),
    ("mobilenet_v2", lambda: tvm.mobilenet_v2(num_classes=10)),
    ("mobilenet_v3_small", lambda: tvm.mobilenet_v3_small(num_classes=10)),
    ("efficientnet_b0", lambda: tvm.efficientnet_b0(num_classes=10)),
    ("regnet_x_400mf", lambda: tvm.regnet_x_400mf(num_classes=10)),
    ("shufflenet_v2_x0_5", lambda: tvm.shufflenet_v2_x0_5(num_classes=10)),
    ("mnasnet0_5", lambda: tvm.mnasnet0_5(num_classes=10)),
    ("googlenet", lambda: tvm.googlenet(num_classes=10, aux_logits=False,
                                        init_weights=False)),
    ("inception_v3", lambda: tvm.inception_v3(num_classes=10,
                                              aux_logits=False,
                                              init_weights=False)),
    ("vgg11_bn_small", small_vgg11_bn),
    ("alexnet_small", small_alexnet),
    ("squeezenet1_1", lambda: tvm.squeezenet1_1(num_classes=10)),
    ("convtranspose_small", convtranspose_small),
]


def randomize_batchnorms(model, gen):
    """Give every BatchNorm random running statistics, γ and β."""
    with torch.no_grad():
        for module in model.modules():
            if not isinstance(module, BN_TYPES):
                continue
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=gen) * 0.5)
            module.running_var.copy_(torch.rand(n, generator=gen) * 4 + 0.05)
            if module.affine:
                module.weight.copy_(torch.rand(n, generator=gen) * 2 - 0.5)
                module.bias.copy_(torch.randn(n, generator=gen) * 0.1)
            module.num_batches_tracked.fill_(1000)


class UnpackingTracer(torch.fx.Tracer):
    """An fx tracer that unpacks a Proxy into a fixed number of Proxies
    (x1, x2 = x.chunk(2)) under Python 3.11.

    torch 1.13's Proxy.__iter__ finds the UNPACK_SEQUENCE instruction by
    f_lasti // 2, which assumes the 2-byte instructions of Python ≤ 3.10.
    Python 3.11 adds inline cache entries, so that index points at the wrong
    instruction and tracing fails; this tracer matches the byte offset.
    """

    def iter(self, obj):
        frame = inspect.currentframe()
        # iter is called by Proxy.__iter__, which is called by the traced code.
        calling_frame = frame.f_back.f_back
        for inst in dis.get_instructions(calling_frame.f_code):
            if inst.offset == calling_frame.f_lasti:
                if inst.opname == "UNPACK_SEQUENCE":
                    return (obj[i] for i in range(inst.argval))
                break
        return super().iter(obj)


def fx_pairs(model):
    """Return {conv: bn} for every conv whose only user is a BatchNorm."""
    # ShuffleNet's channel_shuffle unpacks x.size(), which a Proxy cannot
    # do, so the tracer records it as one opaque function call instead.
    tracer = UnpackingTracer(
        autowrap_functions=(shufflenetv2.channel_shuffle,))
    graph = tracer.trace(model)
    modules = dict(model.named_modules())
    pairs = {}
    for node in graph.nodes:
        if node.op != "call_module":
            continue
        if not isinstance(modules[node.target], CONV_TYPES):
            continue
        users = list(node.users)
        if len(users) != 1:
            continue
        user = users[0]
        if user.op == "call_module" and isinstance(modules[user.target], BN_TYPES):
            pairs[node.target] = user.target
    return pairs


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: torchvision_checkpoints.py OUTDIR")
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)

    index = {}
    for name, build in ARCHITECTURES:
        start = time.time()
        model = build().eval()
        randomize_batchnorms(model, gen)
        state = model.state_dict()

        files = [name + ".zip.pth", name + ".legacy.pth"]
        torch.save(state, os.path.join(out, files[0]))
        torch.save(state, os.path.join(out, files[1]),
                   _use_new_zipfile_serialization=False)
        if name in WHOLE_MODULE:
            files.append(name + ".module.pth")
            torch.save(model, os.path.join(out, files[-1]))

        convs = {}
        batchnorms = {}
        for mname, module in model.named_modules():
            if isinstance(module, CONV_TYPES):
                convs[mname] = {"groups": module.groups,
                                "transposed": bool(module.transposed),
                                "out_channels": module.out_channels}
            elif isinstance(module, BN_TYPES):
                batchnorms[mname] = {"eps": module.eps,
                                     "momentum": module.momentum}

        pairs = fx_pairs(model)
        ambiguous = sorted(
            c for c in pairs
            if convs[c]["transposed"] and convs[c]["groups"] > 1)
        index[name] = {"files": files, "pairs": pairs, "convs": convs,
                       "batchnorms": batchnorms,
                       "state_dict_ambiguous": ambiguous}
        print("%-20s %3d pairs, %3d convs, %5.1f s" % (
            name, len(index[name]["pairs"]), len(convs), time.time() - start),
            file=sys.stderr)

    with open(os.path.join(out, "pairs.json"), "w") as f:
        json.dump(index, f, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
