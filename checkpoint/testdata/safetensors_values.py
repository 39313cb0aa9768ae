"""Print the tensors of a safetensors file, decoded with json and struct only.

Usage: safetensors_values.py FILE

This is an independent reader for the Go tests: it does not use the
safetensors package (not packaged in Debian). It checks the layout the
format requires (header length, a JSON object, data_offsets that tile the
data without gaps) and exits with status 1 and a message on stderr when the
file breaks it. Output is JSON:
{"header_len": N, "metadata": {...} or null,
 "tensors": {NAME: {"dtype": "F32", "shape": [...], "values": [HEX...]}}}
with the tensors in data order and each value as float.hex() of the element
converted to float64, so the Go side can compare bit for bit.
"""

import json
import struct
import sys

FORMATS = {
    "F64": ("d", 8), "F32": ("f", 4), "F16": ("e", 2), "BF16": ("H", 2),
    "I64": ("q", 8), "I32": ("i", 4), "I16": ("h", 2), "I8": ("b", 1),
    "U8": ("B", 1), "BOOL": ("?", 1),
}


def main():
    with open(sys.argv[1], "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    if 8 + n > len(data):
        sys.exit("header length %d beyond the file" % n)
    header = json.loads(data[8:8 + n].decode("utf-8"))
    if not isinstance(header, dict):
        sys.exit("header is not an object")
    metadata = header.pop("__metadata__", None)
    body = data[8 + n:]
    entries = sorted(header.items(), key=lambda kv: kv[1]["data_offsets"])
    end = 0
    out = {}
    for name, e in entries:
        begin, stop = e["data_offsets"]
        if begin != end:
            sys.exit("%s: begins at %d, previous tensor ends at %d" % (name, begin, end))
        end = stop
        fmt, size = FORMATS[e["dtype"]]
        count = 1
        for d in e["shape"]:
            count *= d
        if stop - begin != count * size:
            sys.exit("%s: %d bytes for %d elements" % (name, stop - begin, count))
        values = struct.unpack("<%d%s" % (count, fmt), body[begin:stop])
        if e["dtype"] == "BF16":
            values = [struct.unpack("<f", struct.pack("<I", v << 16))[0] for v in values]
        out[name] = {
            "dtype": e["dtype"],
            "shape": e["shape"],
            "values": [float(v).hex() for v in values],
        }
    if end != len(body):
        sys.exit("%d bytes after the last tensor" % (len(body) - end))
    json.dump({"header_len": n, "metadata": metadata, "tensors": out}, sys.stdout)


main()
