"""Print the state_dict of a TorchScript archive as torch.jit.load reads it.

Usage: torchscript_values.py FILE

Output is JSON in the form torch_values.py uses, with the names in
state_dict order under "order":
{"order": [NAME...], "tensors": {NAME: {"dtype", "shape", "values"}}}
"""

import json
import sys

import torch

module = torch.jit.load(sys.argv[1], map_location="cpu")
state = module.state_dict()
tensors = {}
for name, t in state.items():
    tensors[name] = {
        "dtype": str(t.dtype).replace("torch.", ""),
        "shape": list(t.shape),
        "values": [float(v).hex() for v in t.double().reshape(-1).tolist()],
    }
json.dump({"order": list(state.keys()), "tensors": tensors}, sys.stdout)
