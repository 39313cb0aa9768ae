"""Write small PyTorch checkpoints and the tensors torch held when saving them.

Usage: make_fixtures.py DIR

Writes the fixture files into DIR and DIR/expected.json, which maps each
file name to {"models": [{"key", "prefix", "order", "tensors"}], "metadata",
"warnings", "modules"}. Tensor values are float.hex() of each element as
float64, so the Go tests compare them bit for bit. Everything expected is
taken from the live torch objects, not from the files.
"""

import collections
import io
import json
import os
import pickle
import sys
import zipfile

import numpy as np
import torch
import torch.nn as nn

OUT = sys.argv[1]
expected = {}


def describe(t):
    return {
        "dtype": str(t.dtype).replace("torch.", ""),
        "shape": list(t.shape),
        "values": [float(x).hex() for x in t.detach().double().reshape(-1).tolist()],
    }


def model_entry(key, prefix, sd):
    return {
        "key": key,
        "prefix": prefix,
        "order": [k[len(prefix):] for k in sd],
        "tensors": {k[len(prefix):]: describe(v) for k, v in sd.items()},
    }


def record(name, models, metadata=None, warnings=(), modules=None):
    expected[name] = {
        "models": models,
        "metadata": metadata or {},
        "warnings": list(warnings),
        "modules": modules or {},
    }


def save(obj, name, legacy=False):
    torch.save(obj, os.path.join(OUT, name), _use_new_zipfile_serialization=not legacy)


def module_facts(model, strip=""):
    """Return class, plain attributes and parameter slots of every module."""
    facts = {}
    keys = ["eps", "momentum", "affine", "track_running_stats", "stride", "padding",
            "dilation", "groups", "transposed", "in_channels", "out_channels",
            "kernel_size", "num_features", "output_padding"]
    for name, m in model.named_modules():
        if strip and name == strip:
            name = ""
        elif strip and name.startswith(strip + "."):
            name = name[len(strip) + 1:]
        elif strip:
            continue
        attrs = {}
        for k in keys:
            if k in m.__dict__:
                v = m.__dict__[k]
                attrs[k] = list(v) if isinstance(v, tuple) else v
        slots = []
        for short, p in list(m._parameters.items()) + list(m._buffers.items()):
            full = (name + "." if name else "") + short
            slots.append([short, full if p is not None else ""])
        facts[name] = {
            "class": type(m).__module__ + "." + type(m).__name__,
            "attrs": attrs,
            "params": slots,
            "children": [(name + "." if name else "") + c for c, ch in m._modules.items() if ch is not None],
        }
    return facts


torch.manual_seed(1234)

# Every storage dtype, special values, a scalar and an empty tensor.
dtypes = collections.OrderedDict()
dtypes["f32"] = torch.randn(3, 4)
dtypes["f64"] = torch.randn(5, dtype=torch.float64)
dtypes["f16"] = torch.randn(2, 3).half()
dtypes["bf16"] = torch.randn(4).bfloat16()
dtypes["i64"] = torch.tensor([-(2 ** 40), 7, 2 ** 53 + 1, -1])
dtypes["i32"] = torch.randint(-100000, 100000, (6,), dtype=torch.int32)
dtypes["i16"] = torch.randint(-30000, 30000, (3, 2), dtype=torch.int16)
dtypes["i8"] = torch.randint(-128, 128, (7,), dtype=torch.int8)
dtypes["u8"] = torch.randint(0, 256, (5,), dtype=torch.uint8)
dtypes["b"] = torch.tensor([True, False, True])
dtypes["scalar"] = torch.tensor(3.5)
dtypes["empty"] = torch.zeros(0, 3)
dtypes["special"] = torch.tensor([float("nan"), float("inf"), float("-inf"), -0.0, 1e-45, 3.4e38])
dtypes["special16"] = torch.tensor([float("inf"), -0.0, 6e-8, 65504.0]).half()
for name, legacy in [("dtypes_zip.pt", False), ("dtypes_legacy.pt", True)]:
    save(dtypes, name, legacy)
    record(name, [model_entry("", "", dtypes)])

# Views: storage offsets, shared storages, non-contiguous and expanded.
base = torch.arange(24, dtype=torch.float32).reshape(4, 6) * 0.5 - 3
views = collections.OrderedDict()
views["base"] = base
views["offset"] = base[1:]
views["row2"] = base[2]
views["column1"] = base[:, 1]
views["transposed"] = base.t()
views["shared_a"] = base[0:2]
views["shared_b"] = base[2:4]
views["strided"] = base[::2, ::3]
views["expanded"] = torch.arange(3, dtype=torch.float64).reshape(3, 1).expand(3, 4)
for name, legacy in [("views_zip.pt", False), ("views_legacy.pt", True)]:
    save(views, name, legacy)
    record(name, [model_entry("", "", views)])


def storage_dtypes(data_pkl):
    """Map storage keys in a data.pkl to storage class names."""
    found = {}

    class Scan(pickle.Unpickler):
        def find_class(self, module, name):
            if name.endswith("Storage"):
                return name
            if name.startswith("_rebuild"):
                return lambda *args: None
            return super().find_class(module, name)

        def persistent_load(self, pid):
            found[pid[2]] = pid[1]
            return None

    Scan(io.BytesIO(data_pkl)).load()
    return found


SIZES = {"FloatStorage": 4, "DoubleStorage": 8, "HalfStorage": 2, "BFloat16Storage": 2,
         "LongStorage": 8, "IntStorage": 4, "ShortStorage": 2, "CharStorage": 1,
         "ByteStorage": 1, "BoolStorage": 1}


def rewrite_zip(src, dst, big_endian=False, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(os.path.join(OUT, src)) as zin:
        names = zin.namelist()
        root = names[0].split("/")[0] + "/"
        kinds = storage_dtypes(zin.read(root + "data.pkl"))
        with zipfile.ZipFile(os.path.join(OUT, dst), "w", compression=compression) as zout:
            for n in names:
                data = zin.read(n)
                if big_endian and n.startswith(root + "data/"):
                    size = SIZES[kinds[n[len(root + "data/"):]]]
                    if size > 1:
                        data = np.frombuffer(data, dtype="<u%d" % size).byteswap().tobytes()
                if n == root + "byteorder":
                    continue
                zout.writestr(n, data)
            if big_endian:
                zout.writestr(root + "byteorder", b"big")


rewrite_zip("dtypes_zip.pt", "dtypes_big_endian.pt", big_endian=True)
record("dtypes_big_endian.pt", [model_entry("", "", dtypes)])
rewrite_zip("dtypes_zip.pt", "dtypes_deflated.pt", compression=zipfile.ZIP_DEFLATED)
record("dtypes_deflated.pt", [model_entry("", "", dtypes)])
rewrite_zip("views_zip.pt", "views_deflated.pt", compression=zipfile.ZIP_DEFLATED)
record("views_deflated.pt", [model_entry("", "", views)])

# A whole pickled nn.Module, with running statistics from a forward pass.
net = nn.Sequential(collections.OrderedDict([
    ("conv", nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False)),
    ("bn", nn.BatchNorm2d(8, eps=1e-3, momentum=0.03)),
    ("act", nn.ReLU()),
    ("dw", nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=8)),
    ("bn2", nn.BatchNorm2d(8, affine=False)),
    ("up", nn.ConvTranspose2d(8, 4, 2, stride=2)),
    ("bn3", nn.BatchNorm2d(4, momentum=None)),
]))
net.train()
net(torch.randn(2, 3, 10, 10))
net.eval()
for name, legacy in [("module_zip.pt", False), ("module_legacy.pt", True)]:
    save(net, name, legacy)
    record(name, [model_entry("", "", net.state_dict())], modules=module_facts(net))
dp = nn.DataParallel(net)
save(dp, "module_dataparallel.pt")
record("module_dataparallel.pt", [model_entry("", "module.", dp.state_dict())], modules=module_facts(dp, "module"))

# A training checkpoint with two models, optimizer state and inert extras.
small = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
opt = torch.optim.SGD(small.parameters(), lr=0.1, momentum=0.9)
small(torch.randn(1, 1, 5, 5)).sum().backward()
opt.step()
ema = collections.OrderedDict((k, v.clone() * 0.5) for k, v in small.state_dict().items())
nested = {
    "epoch": 3,
    "model": small.state_dict(),
    "ema": ema,
    "optimizer": opt.state_dict(),
    "unused": None,
    "acc": np.float64(0.91),
    "device": torch.device("cpu"),
    "size": torch.Size([2, 3]),
    "args": {"lr": 0.1, "name": "run"},
}
save(nested, "nested.pt")
record("nested.pt", [model_entry("model", "", small.state_dict()), model_entry("ema", "", ema)],
       warnings=["optimizer"])

# convbn-diag's own metadata beside the weights.
meta = {"convbn_diag.format": "1", "convbn_diag.layers": "[]"}
save({"convbn_diag_metadata": meta, "state_dict": small.state_dict()}, "metadata.pt")
record("metadata.pt", [model_entry("state_dict", "", small.state_dict())], metadata=meta)


# A file referencing os.system: reading it must not run the command.
class Evil:
    def __reduce__(self):
        return (os.system, ("touch " + os.path.join(OUT, "executed"),))


save({"state_dict": small.state_dict(), "payload": Evil()}, "dangerous.pt")
record("dangerous.pt", [model_entry("state_dict", "", small.state_dict())],
       warnings=[os.system.__module__ + ".system"])

# A quantized tensor is skipped with a warning; the float tensor stays.
plain = collections.OrderedDict([("w", torch.randn(3))])
quant = collections.OrderedDict(plain)
quant["q"] = torch.quantize_per_tensor(torch.randn(4), 0.1, 2, torch.qint8)
save(quant, "quantized.pt")
record("quantized.pt", [model_entry("", "", plain)], warnings=["quantized tensor q"])

with open(os.path.join(OUT, "expected.json"), "w") as f:
    json.dump(expected, f)
