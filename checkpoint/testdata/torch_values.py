"""Print tensors of a checkpoint as loaded by torch, for the Go tests.

Usage: torch_values.py FILE KEY [NAME ...]

KEY is the dotted path of the model inside the loaded object ("" for the
object itself). A pickled nn.Module is read through its state_dict(). With
no NAME every tensor is printed. Output is JSON:
{"tensors": {NAME: {"dtype": "float32", "shape": [...], "values": [HEX...]}}}
where each value is float.hex() of the element converted to float64, so the
Go side can compare bit for bit.

Classes that torch cannot import (such as yolov5's models.yolo.Model) are
replaced by empty nn.Module subclasses, so a pickled third-party module
still yields its parameters and buffers.
"""

import importlib.abc
import importlib.util
import json
import sys
import types

import torch


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Import any module that is not installed as a stub whose attributes
    are empty nn.Module subclasses. It runs after the real finders."""

    def find_spec(self, fullname, path, target=None):
        return importlib.util.spec_from_loader(fullname, self, is_package=True)

    def create_module(self, spec):
        module = types.ModuleType(spec.name)
        module.__path__ = []

        def stub(name, module_name=spec.name):
            cls = type(name, (torch.nn.Module,), {"__module__": module_name})
            setattr(module, name, cls)
            return cls

        module.__getattr__ = stub
        return module

    def exec_module(self, module):
        pass


sys.meta_path.append(_StubFinder())


def load_model(path, key):
    obj = torch.load(path, map_location="cpu")
    if key:
        for part in key.split("."):
            obj = obj[int(part)] if isinstance(obj, (list, tuple)) else obj[part]
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict(keep_vars=False)
    return obj


def describe(t):
    return {
        "dtype": str(t.dtype).replace("torch.", ""),
        "shape": list(t.shape),
        "values": [float(x).hex() for x in t.detach().double().reshape(-1).tolist()],
    }


def main():
    path, key, names = sys.argv[1], sys.argv[2], sys.argv[3:]
    sd = load_model(path, key)
    if not names:
        names = [k for k, v in sd.items() if isinstance(v, torch.Tensor)]
    out = {"tensors": {n: describe(sd[n]) for n in names}}
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
