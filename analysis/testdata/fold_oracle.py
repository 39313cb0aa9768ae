"""Fold a ConvBN block with PyTorch and print per-channel reference values.

Reads a JSON list of block descriptions (the analysis package's torch test
writes it), checks for each that the fused conv reproduces
BatchNorm(conv(x)) in float64, and prints a JSON list with omega,
fused_bias and fused_weight_norm per output channel. Exits with status 1
when a fused conv does not match.
"""
import json
import sys

import torch


def fold(spec):
    shape, groups, transposed = spec["shape"], spec["groups"], spec["transposed"]
    dims = len(shape) - 2
    weight = torch.tensor(spec["weight"], dtype=torch.float64).reshape(shape)
    bias = torch.tensor(spec["bias"], dtype=torch.float64)
    out_channels = shape[1] * groups if transposed else shape[0]
    in_channels = shape[0] if transposed else shape[1] * groups

    conv_fn = {
        (False, 1): torch.nn.functional.conv1d,
        (False, 2): torch.nn.functional.conv2d,
        (True, 1): torch.nn.functional.conv_transpose1d,
        (True, 2): torch.nn.functional.conv_transpose2d,
    }[(transposed, dims)]
    bn = torch.nn.BatchNorm1d if dims == 1 else torch.nn.BatchNorm2d
    bn = bn(out_channels, eps=spec["eps"]).double().eval()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor(spec["gamma"], dtype=torch.float64))
        bn.bias.copy_(torch.tensor(spec["beta"], dtype=torch.float64))
        bn.running_mean.copy_(torch.tensor(spec["mean"], dtype=torch.float64))
        bn.running_var.copy_(torch.tensor(spec["variance"], dtype=torch.float64))

    x = torch.randn([2, in_channels] + [5] * dims, dtype=torch.float64)
    with torch.no_grad():
        reference = bn(conv_fn(x, weight, bias, groups=groups))

        omega = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        fused_bias = bn.bias + omega * (bias - bn.running_mean)
        if transposed:
            # [C_in, C_out/G, k...] viewed as [G, C_in/G, C_out/G, k...]:
            # element [i, j, ...] belongs to output channel g(i)*(C_out/G) + j.
            per_group = out_channels // groups
            view = weight.reshape([groups, shape[0] // groups, per_group, -1])
            fused = view * omega.reshape(groups, 1, per_group, 1)
            fused_norm = fused.permute(0, 2, 1, 3).reshape(out_channels, -1).norm(dim=1)
            fused = fused.reshape(shape)
        else:
            fused = weight * omega.reshape([-1] + [1] * (len(shape) - 1))
            fused_norm = fused.reshape(out_channels, -1).norm(dim=1)
        folded = conv_fn(x, fused, fused_bias, groups=groups)

    error = (folded - reference).abs().max().item()
    if error > 1e-9 * max(1.0, reference.abs().max().item()):
        print(f"fused conv differs from BatchNorm(conv(x)) by {error}", file=sys.stderr)
        sys.exit(1)
    return {
        "omega": omega.tolist(),
        "fused_bias": fused_bias.tolist(),
        "fused_weight_norm": fused_norm.tolist(),
    }


torch.manual_seed(0)
json.dump([fold(spec) for spec in json.load(open(sys.argv[1]))], sys.stdout)
