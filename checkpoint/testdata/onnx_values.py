"""Print an ONNX model's initializers and nodes as the onnx package reads them.

Usage: onnx_values.py FILE [NAME ...]

Output is JSON: {"tensors": {NAME: {"dtype": "float32", "shape": [...],
"values": [HEX...]}}, "nodes": [{"op_type", "inputs", "outputs", "attrs"}],
"opsets": {DOMAIN: VERSION}}. Values are float.hex() of each element
converted to float64, so the Go side can compare bit for bit. With NAMEs
only those initializers are printed. Node attributes of type float, int,
string, floats and ints are included, floats as float.hex() of the stored
float32 widened to float64.
"""

import json
import sys

import onnx
from onnx import numpy_helper


def attr_value(a):
    t = onnx.AttributeProto
    if a.type == t.FLOAT:
        return float(a.f).hex()
    if a.type == t.INT:
        return a.i
    if a.type == t.STRING:
        return a.s.decode("utf-8", "replace")
    if a.type == t.FLOATS:
        return [float(v).hex() for v in a.floats]
    if a.type == t.INTS:
        return list(a.ints)
    return None


def main():
    model = onnx.load(sys.argv[1])
    names = set(sys.argv[2:])
    tensors = {}
    for init in model.graph.initializer:
        if names and init.name not in names:
            continue
        array = numpy_helper.to_array(init)
        tensors[init.name] = {
            "dtype": str(array.dtype),
            "shape": list(array.shape),
            "values": [float(v).hex() for v in array.reshape(-1).tolist()],
        }
    nodes = []
    for n in model.graph.node:
        attrs = {a.name: attr_value(a) for a in n.attribute}
        nodes.append({"op_type": n.op_type, "inputs": list(n.input),
                      "outputs": list(n.output), "attrs": attrs})
    opsets = {o.domain: o.version for o in model.opset_import}
    json.dump({"tensors": tensors, "nodes": nodes, "opsets": opsets}, sys.stdout)


main()
