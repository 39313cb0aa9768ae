package checkpoint

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

var (
	onnxPythonOnce sync.Once
	onnxPythonErr  error
)

// requireONNXPython skips the test when /usr/bin/python3 cannot import
// onnx, except under CI (CI set in the environment), where it fails.
func requireONNXPython(t testing.TB) {
	t.Helper()
	onnxPythonOnce.Do(func() {
		onnxPythonErr = exec.Command(torchPython, "-c", "import onnx").Run()
	})
	if onnxPythonErr == nil {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s cannot import onnx (%v); CI requires the ONNX reference", torchPython, onnxPythonErr)
	}
	t.Skipf("%s cannot import onnx (%v); skipping the ONNX comparison", torchPython, onnxPythonErr)
}

// onnxDump is the output of testdata/onnx_values.py.
type onnxDump struct {
	Tensors map[string]torchTensor `json:"tensors"`
	Nodes   []struct {
		OpType  string         `json:"op_type"`
		Inputs  []string       `json:"inputs"`
		Outputs []string       `json:"outputs"`
		Attrs   map[string]any `json:"attrs"`
	} `json:"nodes"`
	Opsets map[string]int64 `json:"opsets"`
}

func pythonONNX(t *testing.T, path string) onnxDump {
	t.Helper()
	requireONNXPython(t)
	script := filepath.Join(moduleRoot(t), "checkpoint", "testdata", "onnx_values.py")
	cmd := exec.Command(torchPython, script, path)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("onnx_values.py %s: %v", path, err)
	}
	var dump onnxDump
	if err := json.Unmarshal(out, &dump); err != nil {
		t.Fatalf("decode onnx_values.py output: %v", err)
	}
	return dump
}

// attrMatches compares a decoded attribute with the JSON form that
// onnx_values.py prints.
func attrMatches(got, want any) bool {
	switch w := want.(type) {
	case string:
		if g, ok := got.(float64); ok {
			return fmt.Sprint(g) == fmt.Sprint(hexFloat(w))
		}
		return got == w
	case float64:
		g, ok := got.(int64)
		return ok && float64(g) == w
	case []any:
		switch g := got.(type) {
		case []int64:
			if len(g) != len(w) {
				return false
			}
			for i := range g {
				if float64(g[i]) != w[i] {
					return false
				}
			}
			return true
		case []float64:
			if len(g) != len(w) {
				return false
			}
			for i := range g {
				if g[i] != hexFloat(w[i].(string)) {
					return false
				}
			}
			return true
		}
	}
	return false
}

func hexFloat(s string) float64 {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return math.NaN()
	}
	return v
}

func TestONNXRealMatchesPythonONNX(t *testing.T) {
	for _, name := range []string{"ulfd_version-RFB-320.onnx", "ulfd_version-RFB-320_simplified.onnx"} {
		t.Run(name, func(t *testing.T) {
			path := realCheckpoint(t, name)
			f, err := Open(path)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer f.Close()
			if len(f.Warnings) != 0 {
				t.Errorf("unexpected warnings: %q", f.Warnings)
			}
			m := f.Models[0]
			want := pythonONNX(t, path)

			if len(m.Tensors) != len(want.Tensors) {
				t.Errorf("initializer count mismatch: got %d, want %d", len(m.Tensors), len(want.Tensors))
			}
			for _, tn := range m.Tensors {
				ref, ok := want.Tensors[tn.Name]
				if !ok {
					t.Errorf("initializer %s not in onnx's output", tn.Name)
					continue
				}
				compareTensor(t, tn, ref)
			}

			g := m.Graph
			if fmt.Sprint(g.Opsets) != fmt.Sprint(map[string]int64{"": want.Opsets[""]}) {
				t.Errorf("opsets mismatch: got %v, want %v", g.Opsets, want.Opsets)
			}
			if len(g.Nodes) != len(want.Nodes) {
				t.Fatalf("node count mismatch: got %d, want %d", len(g.Nodes), len(want.Nodes))
			}
			for i, n := range g.Nodes {
				w := want.Nodes[i]
				if n.OpType != w.OpType || fmt.Sprint(n.Inputs) != fmt.Sprint(w.Inputs) || fmt.Sprint(n.Outputs) != fmt.Sprint(w.Outputs) {
					t.Errorf("node %d mismatch: got %s %v → %v, want %s %v → %v", i, n.OpType, n.Inputs, n.Outputs, w.OpType, w.Inputs, w.Outputs)
				}
				for k, wv := range w.Attrs {
					if wv == nil {
						continue // a tensor or graph attribute
					}
					if !attrMatches(n.Attrs[k], wv) {
						t.Errorf("node %d (%s) attribute %s mismatch: got %v, want %v", i, n.OpType, k, n.Attrs[k], wv)
					}
				}
			}
		})
	}
}

func TestONNXULFDWeightsMatchPth(t *testing.T) {
	onnxFile, err := Open(realCheckpoint(t, "ulfd_version-RFB-320.onnx"))
	if err != nil {
		t.Fatalf("Open onnx: %v", err)
	}
	defer onnxFile.Close()
	pthFile, err := Open(realCheckpoint(t, "ulfd_version-RFB-320.pth"))
	if err != nil {
		t.Fatalf("Open pth: %v", err)
	}
	defer pthFile.Close()

	floats := 0
	for _, want := range pthFile.Models[0].Tensors {
		got := tensorByName(onnxFile.Models[0], want.Name)
		if got == nil {
			t.Errorf("initializer %s missing", want.Name)
			continue
		}
		if !want.DType.IsFloat() {
			continue
		}
		floats++
		a, err1 := got.Float64s()
		b, err2 := want.Float64s()
		if err1 != nil || err2 != nil {
			t.Fatalf("%s: read: %v, %v", want.Name, err1, err2)
		}
		if fmt.Sprint(a) != fmt.Sprint(b) || !sameShape(got.Shape, want.Shape) {
			t.Errorf("%s differs between the ONNX and .pth files", want.Name)
		}
	}
	if floats != 209 {
		t.Errorf("float tensor count mismatch: got %d, want 209", floats)
	}
}

// Protobuf encoders for hand-built ONNX messages.

func pbBytes(b []byte, num protowire.Number, v []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func pbString(b []byte, num protowire.Number, s string) []byte { return pbBytes(b, num, []byte(s)) }

func pbVarint(b []byte, num protowire.Number, v uint64) []byte {
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func pbFixed32(b []byte, num protowire.Number, v uint32) []byte {
	b = protowire.AppendTag(b, num, protowire.Fixed32Type)
	return protowire.AppendFixed32(b, v)
}

func packedVarints(vals ...int64) []byte {
	var b []byte
	for _, v := range vals {
		b = protowire.AppendVarint(b, uint64(v))
	}
	return b
}

func packedFloat32(vals ...float32) []byte {
	var b []byte
	for _, v := range vals {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return b
}

// onnxTensorMsg builds a TensorProto with the given name, type and dims,
// followed by the extra (data) fields.
func onnxTensorMsg(name string, dataType uint64, dims []int64, extra []byte) []byte {
	var b []byte
	b = pbBytes(b, onnxTensorDims, packedVarints(dims...))
	b = pbVarint(b, onnxTensorDataType, dataType)
	b = pbString(b, onnxTensorName, name)
	return append(b, extra...)
}

// onnxModelMsg wraps graph fields in a ModelProto importing opset 13.
func onnxModelMsg(graph []byte) []byte {
	var b []byte
	b = pbVarint(b, onnxModelIRVersion, 7)
	b = pbBytes(b, onnxModelGraph, graph)
	opset := pbString(nil, onnxOpsetDomain, "")
	opset = pbVarint(opset, onnxOpsetVersion, 13)
	return pbBytes(b, onnxModelOpsetImport, opset)
}

func openONNXBytes(t *testing.T, data []byte) (*File, string, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "model.onnx")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err == nil {
		t.Cleanup(func() { f.Close() })
	}
	return f, path, err
}

func TestONNXTensorEncodings(t *testing.T) {
	var graph []byte
	add := func(name string, dataType uint64, dims []int64, extra []byte) {
		graph = pbBytes(graph, onnxGraphInitializer, onnxTensorMsg(name, dataType, dims, extra))
	}
	add("packed_float", onnxTensorTypeFloat, []int64{2, 2}, pbBytes(nil, onnxTensorFloatData, packedFloat32(1, -2, 0.5, 3)))
	var unpacked []byte
	for _, v := range []float32{4, 5, 6} {
		unpacked = pbFixed32(unpacked, onnxTensorFloatData, math.Float32bits(v))
	}
	add("unpacked_float", onnxTensorTypeFloat, []int64{3}, unpacked)
	add("int64", onnxTensorTypeInt64, []int64{3}, pbBytes(nil, onnxTensorInt64Data, packedVarints(-1, 1<<40, 7)))
	add("double", onnxTensorTypeDouble, []int64{2}, pbBytes(nil, onnxTensorDoubleData, binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(nil, math.Float64bits(math.Pi)), math.Float64bits(-1e-300))))
	add("half", onnxTensorTypeFloat16, []int64{2}, pbBytes(nil, onnxTensorInt32Data, packedVarints(0x3c00, 0xc000)))
	add("int8", onnxTensorTypeInt8, []int64{2}, pbBytes(nil, onnxTensorInt32Data, packedVarints(-128, 127)))
	add("bf16_raw", onnxTensorTypeBFloat16, []int64{1}, pbBytes(nil, onnxTensorRawData, []byte{0x80, 0x3f}))
	add("scalar_raw", onnxTensorTypeFloat, nil, pbBytes(nil, onnxTensorRawData, packedFloat32(2.5)))
	add("empty", onnxTensorTypeFloat, []int64{0, 3}, nil)
	add("strings", 8, []int64{1}, pbBytes(nil, onnxTensorStringData, []byte("x")))

	var node []byte
	node = pbString(node, onnxNodeInput, "x")
	node = pbString(node, onnxNodeInput, "")
	node = pbString(node, onnxNodeOutput, "y")
	node = pbString(node, onnxNodeOpType, "Custom")
	attr := func(fields []byte) { node = pbBytes(node, onnxNodeAttribute, fields) }
	attr(pbFixed32(pbString(nil, onnxAttrName, "eps"), onnxAttrFloat, math.Float32bits(1e-5)))
	attr(pbVarint(pbVarint(pbString(nil, onnxAttrName, "group"), onnxAttrInt, 4), onnxAttrType, onnxAttributeTypeInt))
	attr(pbBytes(pbString(nil, onnxAttrName, "pads"), onnxAttrInts, packedVarints(1, 0, 1, 0)))
	attr(pbFixed32(pbFixed32(pbString(nil, onnxAttrName, "scales"), onnxAttrFloats, math.Float32bits(0.5)), onnxAttrFloats, math.Float32bits(2)))
	attr(pbString(pbString(nil, onnxAttrName, "mode"), onnxAttrString, "nearest"))
	graph = pbBytes(graph, onnxGraphNode, node)
	var constant []byte
	constant = pbString(constant, onnxNodeOutput, "c")
	constant = pbString(constant, onnxNodeOpType, "Constant")
	constant = pbBytes(constant, onnxNodeAttribute, pbBytes(pbString(nil, onnxAttrName, "value"), onnxAttrTensor, onnxTensorMsg("", onnxTensorTypeFloat, []int64{1}, pbBytes(nil, onnxTensorRawData, packedFloat32(9)))))
	graph = pbBytes(graph, onnxGraphNode, constant)
	graph = pbBytes(graph, onnxGraphOutput, pbString(nil, onnxValueInfoName, "y"))

	f, _, err := openONNXBytes(t, onnxModelMsg(graph))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	m := f.Models[0]
	want := map[string]struct {
		dtype  DType
		shape  []int
		values []float64
	}{
		"packed_float":   {Float32, []int{2, 2}, []float64{1, -2, 0.5, 3}},
		"unpacked_float": {Float32, []int{3}, []float64{4, 5, 6}},
		"int64":          {Int64, []int{3}, []float64{-1, 1 << 40, 7}},
		"double":         {Float64, []int{2}, []float64{math.Pi, -1e-300}},
		"half":           {Float16, []int{2}, []float64{1, -2}},
		"int8":           {Int8, []int{2}, []float64{-128, 127}},
		"bf16_raw":       {BFloat16, []int{1}, []float64{1}},
		"scalar_raw":     {Float32, []int{}, []float64{2.5}},
		"empty":          {Float32, []int{0, 3}, []float64{}},
	}
	if len(m.Tensors) != len(want) {
		t.Errorf("initializer count mismatch: got %d, want %d", len(m.Tensors), len(want))
	}
	for _, tn := range m.Tensors {
		w, ok := want[tn.Name]
		if !ok {
			t.Errorf("unexpected initializer %s", tn.Name)
			continue
		}
		got, err := tn.Float64s()
		if err != nil {
			t.Errorf("%s: Float64s: %v", tn.Name, err)
			continue
		}
		if tn.DType != w.dtype || !sameShape(tn.Shape, w.shape) || fmt.Sprint(got) != fmt.Sprint(w.values) {
			t.Errorf("%s mismatch: got %s %v %v, want %s %v %v", tn.Name, tn.DType, tn.Shape, got, w.dtype, w.shape, w.values)
		}
	}
	if len(f.Warnings) != 1 || !strings.Contains(f.Warnings[0], "strings") {
		t.Errorf("warnings mismatch: got %q, want one about the string tensor", f.Warnings)
	}

	g := m.Graph
	if len(g.Nodes) != 2 || fmt.Sprint(g.Outputs) != "[y]" || g.Opsets[""] != 13 {
		t.Fatalf("graph mismatch: got %d nodes, outputs %v, opsets %v", len(g.Nodes), g.Outputs, g.Opsets)
	}
	n := g.Nodes[0]
	if len(n.Inputs) != 2 || n.Inputs[1] != "" {
		t.Errorf("inputs mismatch: got %q, want [x \"\"]", n.Inputs)
	}
	attrs := map[string]string{
		"eps":    fmt.Sprint(float64(float32(1e-5))),
		"group":  "4",
		"pads":   "[1 0 1 0]",
		"scales": "[0.5 2]",
		"mode":   "nearest",
	}
	for k, v := range attrs {
		if got := fmt.Sprint(n.Attrs[k]); got != v {
			t.Errorf("attribute %s mismatch: got %s, want %s", k, got, v)
		}
	}
	c, ok := g.Nodes[1].Attrs["value"].(*Tensor)
	if !ok || c.Name != "c" {
		t.Fatalf("Constant value mismatch: got %#v, want a tensor named c", g.Nodes[1].Attrs["value"])
	}
	if v, err := c.Float64s(); err != nil || len(v) != 1 || v[0] != 9 {
		t.Errorf("Constant value mismatch: got %v (%v), want [9]", v, err)
	}
}

func TestONNXMalformed(t *testing.T) {
	good := func(extra []byte) []byte {
		return onnxModelMsg(pbBytes(nil, onnxGraphInitializer, onnxTensorMsg("conv.weight", onnxTensorTypeFloat, []int64{2}, extra)))
	}
	wrongWire := onnxModelMsg(pbBytes(nil, onnxGraphInitializer, pbBytes(pbString(nil, onnxTensorName, "bn.running_var"), onnxTensorDataType, []byte{1})))
	dimsNegative := onnxModelMsg(pbBytes(nil, onnxGraphInitializer, onnxTensorMsg("bn.bias", onnxTensorTypeFloat, []int64{-4}, nil)))
	external := good(pbVarint(nil, onnxTensorDataLocation, onnxDataLocationExternal))
	truncatedTensor := good(pbBytes(nil, onnxTensorRawData, packedFloat32(1, 2)))
	// Open recognises ONNX by ir_version followed by a length-delimited
	// field, as exporters write producer_name second.
	modelHead := pbString(pbVarint(nil, onnxModelIRVersion, 7), 2, "pytorch")
	truncatedTensor = truncatedTensor[:len(truncatedTensor)-len(pbBytes(pbString(nil, onnxOpsetDomain, ""), onnxModelOpsetImport, nil))-6]

	cases := []struct {
		name   string
		data   []byte
		kind   error
		tensor string
		reason string
	}{
		{"wrong wire type", wrongWire, ErrMalformed, "bn.running_var", "wire type"},
		{"graph wrong wire type", pbVarint(modelHead, onnxModelGraph, 3), ErrMalformed, "", "ModelProto.graph has wire type"},
		{"raw size", good(pbBytes(nil, onnxTensorRawData, packedFloat32(1, 2, 3))), ErrMalformed, "conv.weight", "raw_data holds 12 bytes"},
		{"float count", good(pbBytes(nil, onnxTensorFloatData, packedFloat32(1))), ErrMalformed, "conv.weight", "holds 1 elements"},
		{"no data", good(nil), ErrMalformed, "conv.weight", "no data"},
		{"negative dims", dimsNegative, ErrMalformed, "bn.bias", "dims"},
		{"external data", external, ErrUnsupportedFormat, "conv.weight", "external file"},
		{"truncated tensor", truncatedTensor, ErrTruncated, "conv.weight", "truncated"},
		{"no graph", modelHead, ErrMissingRecord, "", "no graph"},
		{"bad tag", append(pbVarint(nil, onnxModelIRVersion, 7), 0x3a, 0x80), ErrTruncated, "", "invalid"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, path, err := openONNXBytes(t, c.data)
			checkFormatError(t, err, path, c.kind, FormatONNX, c.tensor, c.reason)
		})
	}
}

func TestONNXTruncatedRealFile(t *testing.T) {
	path := realCheckpoint(t, "ulfd_version-RFB-320.onnx")
	f, err := Open(path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	tn := tensorByName(f.Models[0], "base_net.5.1.running_var")
	if tn == nil || tn.Storage.src == nil {
		t.Fatal("base_net.5.1.running_var is not stored in raw_data")
	}
	cut := tn.Storage.base + 10
	f.Close()

	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int64{cut, 200, 3} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			_, cutPath, err := openONNXBytes(t, data[:size])
			if size == 3 {
				// Three bytes leave only the ir_version field and a tag.
				checkFormatError(t, err, cutPath, ErrTruncated, FormatONNX, "", "")
				return
			}
			want := ""
			if size == cut {
				want = "base_net.5.1.running_var"
			}
			checkFormatError(t, err, cutPath, ErrTruncated, FormatONNX, want, "truncated")
		})
	}
}

// checkFormatError checks that err is a *FormatError of the given kind and
// format that names the file, the tensor (when tensor is not empty) and
// contains reason.
func checkFormatError(t *testing.T, err error, path string, kind error, format Format, tensor, reason string) {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Fatalf("error kind mismatch: got %v, want %v", err, kind)
	}
	var fe *FormatError
	if !errors.As(err, &fe) {
		t.Fatalf("error is %T, want *FormatError", err)
	}
	if fe.Format != format {
		t.Errorf("format mismatch: got %q, want %q", fe.Format, format)
	}
	if fe.Tensor != tensor {
		t.Errorf("tensor mismatch: got %q, want %q (error %v)", fe.Tensor, tensor, err)
	}
	msg := err.Error()
	if !strings.Contains(msg, path) {
		t.Errorf("error %q does not name the file", msg)
	}
	if tensor != "" && !strings.Contains(msg, "tensor "+tensor) {
		t.Errorf("error %q does not name tensor %s", msg, tensor)
	}
	if !strings.Contains(msg, reason) {
		t.Errorf("error %q does not mention %q", msg, reason)
	}
}
