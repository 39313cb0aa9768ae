package checkpoint

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestTorchScriptSilero(t *testing.T) {
	path := realCheckpoint(t, "silero_vad_micro.jit")
	f, err := Open(path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer f.Close()
	if f.Format != FormatTorchScript {
		t.Errorf("format mismatch: got %s, want %s", f.Format, FormatTorchScript)
	}
	m := f.Models[0]
	if m.Root == nil || m.Root.Class != "__torch__.models.number_vad_model.Net_convertable" {
		t.Fatalf("root module mismatch: got %+v", m.Root)
	}

	// Each of the 4 TransformerLayers has 4 dynamic-quantized Linear
	// layers (QKV, out_proj, linear1, linear2) whose packed int8 weights
	// are skipped with a warning.
	packed := 0
	for _, w := range f.Warnings {
		if strings.Contains(w, "LinearPackedParams") && strings.Contains(w, "quantized packed parameters") {
			packed++
		} else {
			t.Errorf("unexpected warning: %s", w)
		}
	}
	if packed != 16 {
		t.Errorf("packed-parameter warning count mismatch: got %d, want 16", packed)
	}

	modules := map[string]*Module{}
	var walk func(*Module)
	walk = func(mod *Module) {
		modules[mod.Name] = mod
		for _, c := range mod.Children {
			walk(c)
		}
	}
	walk(m.Root)
	bn := modules["encoder.3"]
	if bn == nil || !strings.HasSuffix(bn.Class, ".BatchNorm1d") {
		t.Fatalf("encoder.3 mismatch: got %+v, want a BatchNorm1d", bn)
	}
	for k, want := range map[string]any{"eps": 1e-5, "momentum": 0.1, "affine": true, "num_features": int64(8), "training": false} {
		if fmt.Sprint(bn.Attrs[k]) != fmt.Sprint(want) {
			t.Errorf("encoder.3 attribute %s mismatch: got %v, want %v", k, bn.Attrs[k], want)
		}
	}
	dw := modules["encoder.0.0.dw_conv.0"]
	if dw == nil || fmt.Sprint(dw.Attrs["groups"], dw.Attrs["padding"], dw.Attrs["stride"]) != "161 [2] [1]" {
		t.Errorf("encoder.0.0.dw_conv.0 attributes mismatch: got %+v", dw)
	}
	if id := modules["encoder.0.0.dw_conv.1"]; id == nil || !strings.HasSuffix(id.Class, ".Identity") {
		t.Errorf("encoder.0.0.dw_conv.1 mismatch: got %+v, want the Identity placeholder", id)
	}

	want := torchScriptValues(t, path)
	if len(m.Tensors) != len(want.Order) {
		t.Fatalf("tensor count mismatch: got %d, want %d", len(m.Tensors), len(want.Order))
	}
	for i, tn := range m.Tensors {
		if tn.Name != want.Order[i] {
			t.Errorf("tensor %d name mismatch: got %s, want %s", i, tn.Name, want.Order[i])
			continue
		}
		compareTensor(t, tn, want.Tensors[tn.Name])
	}
}

type torchScriptDump struct {
	Order   []string               `json:"order"`
	Tensors map[string]torchTensor `json:"tensors"`
}

func torchScriptValues(t *testing.T, path string) torchScriptDump {
	t.Helper()
	requireTorchReader(t)
	script := filepath.Join(moduleRoot(t), "checkpoint", "testdata", "torchscript_values.py")
	cmd := exec.Command(torchPython, script, path)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("torchscript_values.py %s: %v", path, err)
	}
	var dump torchScriptDump
	if err := json.Unmarshal(out, &dump); err != nil {
		t.Fatalf("decode torchscript_values.py output: %v", err)
	}
	return dump
}

func TestParseTorchScriptLiteral(t *testing.T) {
	cases := []struct {
		in   string
		want string // fmt.Sprint of the value, or "reject"
	}{
		{"1.0000000000000001e-05", "1e-05"},
		{"0.10000000000000001", "0.1"},
		{"161", "161"},
		{"-3", "-3"},
		{"True", "true"},
		{"None", "<nil>"},
		{`"zeros"`, "zeros"},
		{"(5,)", "[5]"},
		{"(1, 2)", "[1 2]"},
		{"()", "[]"},
		{"((1, 2),)", "reject"},
		{`"a\"b"`, "reject"},
		{"__import__('os')", "reject"},
		{"1e5x", "reject"},
		{"inf", "reject"},
	}
	for _, c := range cases {
		v, ok := parseTorchScriptLiteral(c.in)
		got := "reject"
		if ok {
			got = fmt.Sprint(v)
		}
		if got != c.want {
			t.Errorf("parseTorchScriptLiteral(%q) mismatch: got %s, want %s", c.in, got, c.want)
		}
	}
}

func TestParseTorchScriptCode(t *testing.T) {
	code := `class BatchNorm2d(Module):
  __parameters__ = ["weight", "bias", ]
  __buffers__ = ["running_mean", "running_var", "num_batches_tracked", ]
  weight : Tensor
  eps : Final[float] = 0.001
  momentum : Final[Optional[float]] = None
  kernel_size : Final[Tuple[int, int]] = (3, 3)
  def forward(self: __torch__.torch.nn.modules.batchnorm.BatchNorm2d,
    input: Tensor) -> Tensor:
    eps : Final[float] = 7.0
    return input
class Other(Module):
  __parameters__ = []
`
	classes := map[string]*torchScriptClass{}
	if err := parseTorchScriptCode(strings.NewReader(code), "__torch__.torch.nn.modules.batchnorm", classes); err != nil {
		t.Fatal(err)
	}
	bn := classes["__torch__.torch.nn.modules.batchnorm.BatchNorm2d"]
	if bn == nil {
		t.Fatalf("class not found: got %v", classes)
	}
	if got := fmt.Sprint(bn.constants["eps"], bn.constants["momentum"], bn.constants["kernel_size"]); got != "0.001 <nil> [3 3]" {
		t.Errorf("constants mismatch: got %s, want 0.001 <nil> [3 3]", got)
	}
	if got := fmt.Sprint(bn.slots); got != "[weight bias running_mean running_var num_batches_tracked]" {
		t.Errorf("slots mismatch: got %s", got)
	}
	if classes["__torch__.torch.nn.modules.batchnorm.Other"] == nil {
		t.Errorf("second class not found")
	}
}

func TestTorchScriptMalformed(t *testing.T) {
	moduleObject := newPickle().op("c__torch__.m\nNet\n)\x81}").op("(").str("w").op("K\x01u").op("b.").Bytes()
	cases := []struct {
		name    string
		entries []zipEntry
		kind    error
		reason  string
	}{
		{"no data.pkl", []zipEntry{{name: "code/__torch__/m.py", data: []byte("class Net(Module):\n")}, {name: "constants.pkl", data: []byte("\x80\x02).")}}, ErrMissingRecord, "data.pkl"},
		{"not a module", []zipEntry{{name: "data.pkl", data: []byte("\x80\x02K\x01.")}, {name: "constants.pkl", data: []byte("\x80\x02).")}}, ErrMalformed, "not a scripted module"},
		{"bad pickle", []zipEntry{{name: "data.pkl", data: []byte("\x80\x02\xff")}, {name: "constants.pkl", data: []byte("\x80\x02).")}}, ErrMalformed, ""},
		{"module without tensors", []zipEntry{{name: "data.pkl", data: moduleObject}, {name: "constants.pkl", data: []byte("\x80\x02).")}}, nil, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "model.jit")
			if err := os.WriteFile(path, torchZip(t, c.entries...), 0o644); err != nil {
				t.Fatal(err)
			}
			f, err := Open(path)
			if c.kind == nil {
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				if f.Format != FormatTorchScript || len(f.Models) != 0 {
					t.Errorf("result mismatch: got format %s with %d models, want torchscript with none", f.Format, len(f.Models))
				}
				if len(f.Warnings) != 1 || !strings.Contains(f.Warnings[0], "no code record") {
					t.Errorf("warnings mismatch: got %q, want one about the missing code", f.Warnings)
				}
				return
			}
			if !errors.Is(err, c.kind) {
				t.Fatalf("error kind mismatch: got %v, want %v", err, c.kind)
			}
			var fe *FormatError
			if !errors.As(err, &fe) || fe.Format != FormatTorchScript {
				t.Fatalf("error mismatch: got %#v, want a *FormatError for torchscript", err)
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), c.reason) {
				t.Errorf("error %q does not name the file and %q", err, c.reason)
			}
		})
	}
}
