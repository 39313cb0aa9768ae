package examples

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/convbn-diag/convbn-diag/checkpoint"
	"github.com/convbn-diag/convbn-diag/examples/internal/flagsnet"
	"github.com/convbn-diag/convbn-diag/internal/testenv"
)

// systemPython is the interpreter that can import torch. The python3 on
// PATH may be another one.
const systemPython = "/usr/bin/python3"

// requireTorch skips the test when torch cannot be imported, unless the CI
// environment variable is set, in which case the test fails.
func requireTorch(t *testing.T) {
	t.Helper()
	testenv.RequirePython(t, "torch")
}

// flagsTorchScript loads the example with torch.load(weights_only=True),
// prints every tensor's dtype, shape and element bit patterns and the
// metadata, then rebuilds the network from the stored layer list, loads
// the state dict strictly and runs one forward pass.
const flagsTorchScript = `
import json, sys, torch, torch.nn as nn
obj = torch.load(sys.argv[1], weights_only=True)
assert sorted(obj) == ["convbn_diag_metadata", "state_dict"], sorted(obj)
sd, meta = obj["state_dict"], obj["convbn_diag_metadata"]
bits = {torch.float32: torch.int32, torch.int64: torch.int64}
tensors = [{"name": n, "dtype": str(t.dtype).replace("torch.", ""), "shape": list(t.shape),
            "bits": [str(b) for b in t.reshape(-1).view(bits[t.dtype]).tolist()]}
           for n, t in sd.items()]

root, order = nn.Module(), []
for spec in json.loads(meta["convbn_diag.layers"]):
    name, kind = spec["name"], spec["type"]
    if kind in ("Conv2d", "ConvTranspose2d"):
        w, g = sd[name + ".weight"], spec["groups"]
        geo = dict(stride=spec["stride"], padding=spec["padding"], dilation=spec["dilation"],
                   groups=g, bias=name + ".bias" in sd)
        if kind == "Conv2d":
            m = nn.Conv2d(w.shape[1] * g, w.shape[0], tuple(w.shape[2:]), **geo)
        else:
            m = nn.ConvTranspose2d(w.shape[0], w.shape[1] * g, tuple(w.shape[2:]), **geo)
    elif kind == "BatchNorm2d":
        m = nn.BatchNorm2d(sd[name + ".weight"].shape[0], eps=spec["eps"], momentum=spec["momentum"],
                           affine=spec["affine"], track_running_stats=spec["track_running_stats"])
    elif kind == "Linear":
        w = sd[name + ".weight"]
        m = nn.Linear(w.shape[1], w.shape[0])
    elif kind == "AdaptiveAvgPool2d":
        m = nn.AdaptiveAvgPool2d(1)
    elif kind in ("ReLU", "Flatten"):
        m = getattr(nn, kind)()
    else:
        raise SystemExit("layer list has an unknown type: " + kind)
    parent, parts = root, name.split(".")
    for p in parts[:-1]:
        if not hasattr(parent, p):
            parent.add_module(p, nn.Module())
        parent = getattr(parent, p)
    parent.add_module(parts[-1], m)
    order.append(m)
root.load_state_dict(sd, strict=True)
root.eval()
x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
with torch.no_grad():
    for m in order:
        x = m(x)
json.dump({"tensors": tensors, "metadata": meta, "output_shape": list(x.shape)}, sys.stdout)
`

func TestFlagsLoadsInTorch(t *testing.T) {
	requireTorch(t)
	path := filepath.Join(t.TempDir(), "flags.pt")
	if err := os.WriteFile(path, flagsCheckpoint, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(systemPython, "-c", flagsTorchScript, path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("torch could not load or run flags.pt: %v\n%s", err, stderr.String())
	}
	var dump struct {
		Tensors []struct {
			Name  string   `json:"name"`
			DType string   `json:"dtype"`
			Shape []int    `json:"shape"`
			Bits  []string `json:"bits"`
		} `json:"tensors"`
		Metadata    map[string]string `json:"metadata"`
		OutputShape []int             `json:"output_shape"`
	}
	if err := json.Unmarshal(out, &dump); err != nil {
		t.Fatalf("decode torch output: %v", err)
	}

	net := flagsnet.Build()
	if len(dump.Tensors) != len(net.Tensors) {
		t.Fatalf("torch read %d tensors, want %d", len(dump.Tensors), len(net.Tensors))
	}
	for i, want := range net.Tensors {
		got := dump.Tensors[i]
		if got.Name != want.Name || got.DType != want.DType.String() || !slices.Equal(got.Shape, want.Shape) {
			t.Errorf("tensor %d mismatch: got %s %s %v, want %s %s %v", i, got.Name, got.DType, got.Shape, want.Name, want.DType, want.Shape)
			continue
		}
		wantBits := elementBits(t, want)
		if len(got.Bits) != len(wantBits) {
			t.Errorf("tensor %s: torch read %d elements, want %d", want.Name, len(got.Bits), len(wantBits))
			continue
		}
		for k := range wantBits {
			if got.Bits[k] != wantBits[k] {
				t.Errorf("tensor %s element %d bits mismatch: got %s, want %s", want.Name, k, got.Bits[k], wantBits[k])
				break
			}
		}
	}

	layers, err := json.Marshal(net.Layers)
	if err != nil {
		t.Fatal(err)
	}
	wantMeta := map[string]string{
		checkpoint.MetadataFormatKey: checkpoint.MetadataFormat,
		checkpoint.MetadataLayersKey: string(layers),
	}
	for k, v := range net.Metadata {
		wantMeta[k] = v
	}
	if len(dump.Metadata) != len(wantMeta) {
		t.Errorf("torch read %d metadata keys, want %d", len(dump.Metadata), len(wantMeta))
	}
	for k, v := range wantMeta {
		if dump.Metadata[k] != v {
			t.Errorf("metadata %q mismatch: got %q, want %q", k, dump.Metadata[k], v)
		}
	}

	if !slices.Equal(dump.OutputShape, []int{2, 10}) {
		t.Errorf("forward pass output shape mismatch: got %v, want [2 10]", dump.OutputShape)
	}
}

// elementBits returns the stored elements of a generated tensor as the
// signed integers that torch's Tensor.view(int dtype) gives, in decimal.
func elementBits(t *testing.T, tensor flagsnet.Tensor) []string {
	t.Helper()
	raw, err := checkpoint.AppendElements(nil, tensor.DType, tensor.Values)
	if err != nil {
		t.Fatalf("encode %s: %v", tensor.Name, err)
	}
	size := tensor.DType.Size()
	out := make([]string, 0, len(raw)/size)
	for i := 0; i < len(raw); i += size {
		var v int64
		switch size {
		case 4:
			v = int64(int32(binary.LittleEndian.Uint32(raw[i:])))
		case 8:
			v = int64(binary.LittleEndian.Uint64(raw[i:]))
		default:
			t.Fatalf("tensor %s: no bit view for %s", tensor.Name, tensor.DType)
		}
		out = append(out, strconv.FormatInt(v, 10))
	}
	return out
}
