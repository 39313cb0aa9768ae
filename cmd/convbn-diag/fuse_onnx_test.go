package main

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/convbn-diag/convbn-diag/checkpoint"
)

// onnxConv is one Conv node of an ONNX graph with its weight and bias
// initializers.
type onnxConv struct {
	weightName, biasName string
	weight, bias         []float64
	weightDims           []int64
}

// onnxTensor is an initializer decoded from float_data or raw_data.
type onnxTensor struct {
	dims   []int64
	values []float64
}

// readONNXConvs returns the Conv nodes of an ONNX model in graph order,
// decoding only what the test needs: ModelProto.graph (7), GraphProto.node
// (1) and .initializer (5), NodeProto.input (1) and .op_type (4), and
// TensorProto.dims (1), .float_data (4), .name (8) and .raw_data (9).
func readONNXConvs(t *testing.T, path string) []onnxConv {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	graph := onnxField(t, data, 7)
	if len(graph) != 1 {
		t.Fatalf("%s: %d graphs, want 1", path, len(graph))
	}
	inits := map[string]onnxTensor{}
	for _, raw := range onnxField(t, graph[0], 5) {
		name, tensor := decodeONNXTensor(t, raw)
		inits[name] = tensor
	}
	var convs []onnxConv
	for _, node := range onnxField(t, graph[0], 1) {
		if op := onnxField(t, node, 4); len(op) != 1 || string(op[0]) != "Conv" {
			continue
		}
		inputs := onnxField(t, node, 1)
		c := onnxConv{weightName: string(inputs[1])}
		w, ok := inits[c.weightName]
		if !ok {
			t.Fatalf("%s: conv weight %s is not an initializer", path, c.weightName)
		}
		c.weight, c.weightDims = w.values, w.dims
		if len(inputs) > 2 {
			c.biasName = string(inputs[2])
			c.bias = inits[c.biasName].values
		}
		convs = append(convs, c)
	}
	return convs
}

// onnxField returns the payloads of every length-delimited field num of a
// protobuf message.
func onnxField(t *testing.T, msg []byte, num protowire.Number) [][]byte {
	t.Helper()
	var out [][]byte
	for len(msg) > 0 {
		n, typ, l := protowire.ConsumeTag(msg)
		if l < 0 {
			t.Fatalf("bad protobuf tag: %v", protowire.ParseError(l))
		}
		msg = msg[l:]
		if typ == protowire.BytesType && n == num {
			v, m := protowire.ConsumeBytes(msg)
			if m < 0 {
				t.Fatalf("bad protobuf field %d: %v", n, protowire.ParseError(m))
			}
			out = append(out, v)
			msg = msg[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(n, typ, msg)
		if m < 0 {
			t.Fatalf("bad protobuf field %d: %v", n, protowire.ParseError(m))
		}
		msg = msg[m:]
	}
	return out
}

// decodeONNXTensor decodes a float TensorProto.
func decodeONNXTensor(t *testing.T, msg []byte) (string, onnxTensor) {
	t.Helper()
	var (
		name   string
		tensor onnxTensor
		raw    []byte
	)
	for len(msg) > 0 {
		n, typ, l := protowire.ConsumeTag(msg)
		msg = msg[l:]
		switch {
		case n == 1 && typ == protowire.VarintType:
			v, m := protowire.ConsumeVarint(msg)
			tensor.dims = append(tensor.dims, int64(v))
			msg = msg[m:]
		case n == 1 && typ == protowire.BytesType:
			packed, m := protowire.ConsumeBytes(msg)
			for len(packed) > 0 {
				v, k := protowire.ConsumeVarint(packed)
				tensor.dims = append(tensor.dims, int64(v))
				packed = packed[k:]
			}
			msg = msg[m:]
		case n == 4 && typ == protowire.BytesType:
			packed, m := protowire.ConsumeBytes(msg)
			for i := 0; i+4 <= len(packed); i += 4 {
				tensor.values = append(tensor.values, float64(math.Float32frombits(binary.LittleEndian.Uint32(packed[i:]))))
			}
			msg = msg[m:]
		case n == 4 && typ == protowire.Fixed32Type:
			v, m := protowire.ConsumeFixed32(msg)
			tensor.values = append(tensor.values, float64(math.Float32frombits(v)))
			msg = msg[m:]
		case n == 8 && typ == protowire.BytesType:
			v, m := protowire.ConsumeBytes(msg)
			name = string(v)
			msg = msg[m:]
		case n == 9 && typ == protowire.BytesType:
			v, m := protowire.ConsumeBytes(msg)
			raw = v
			msg = msg[m:]
		default:
			m := protowire.ConsumeFieldValue(n, typ, msg)
			if m < 0 {
				t.Fatalf("initializer: bad protobuf field %d", n)
			}
			msg = msg[m:]
		}
	}
	if tensor.values == nil && raw != nil {
		for i := 0; i+4 <= len(raw); i += 4 {
			tensor.values = append(tensor.values, float64(math.Float32frombits(binary.LittleEndian.Uint32(raw[i:]))))
		}
	}
	return name, tensor
}

// TestFuseMatchesSimplifiedONNX fuses the ULFD face detector's .pth and
// compares every conv with onnx-simplifier's folded export of the same
// weights. The unfused ONNX export names each conv's weight by its
// state-dict key, so node i of the two graphs gives the conv's name.
func TestFuseMatchesSimplifiedONNX(t *testing.T) {
	dir := sharedCheckpoints(t)
	out := filepath.Join(t.TempDir(), "ulfd-fused.pt")
	code, stdout, stderr := runCLI(t, "fuse", filepath.Join(dir, "ulfd_version-RFB-320.pth"), "-o", out)
	if code != exitOK {
		t.Fatalf("fuse exit %d, stderr %q", code, stderr)
	}
	if !strings.Contains(stdout, "35 pairs folded") {
		t.Errorf("report does not say 35 pairs folded:\n%s", stdout)
	}

	named := readONNXConvs(t, filepath.Join(dir, "ulfd_version-RFB-320.onnx"))
	folded := readONNXConvs(t, filepath.Join(dir, "ulfd_version-RFB-320_simplified.onnx"))
	if len(named) != 52 || len(folded) != 52 {
		t.Fatalf("conv count mismatch: got %d unfused and %d simplified, want 52 each", len(named), len(folded))
	}
	if named[0].weightName != "base_net.0.0.weight" {
		t.Fatalf("first conv mismatch: got %s, want base_net.0.0.weight", named[0].weightName)
	}

	f, err := checkpoint.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tensors := map[string]*checkpoint.Tensor{}
	for _, tt := range f.Models[0].Tensors {
		tensors[tt.Name] = tt
	}

	// onnx-simplifier folds in float32, rounding ω and then W', and this
	// fold in float64, so they agree to a few float32 roundings: 4 units
	// in the last place for a weight, and for a bias, whose β − ω·μ can
	// cancel, 4 units of its largest magnitude in the layer.
	const maxULPs = 4
	var (
		worstW uint32
		worstB float64
	)
	for i, c := range named {
		conv := strings.TrimSuffix(c.weightName, ".weight")
		w := tensors[conv+".weight"]
		b := tensors[conv+".bias"]
		if w == nil || b == nil {
			t.Fatalf("conv %s: fused output lacks its weight or bias", conv)
		}
		gotW, err := w.Float64s()
		if err != nil {
			t.Fatal(err)
		}
		gotB, err := b.Float64s()
		if err != nil {
			t.Fatal(err)
		}
		wantW, wantB := folded[i].weight, folded[i].bias
		if len(gotW) != len(wantW) || len(gotB) != len(wantB) {
			t.Fatalf("conv %s: sizes mismatch: got %d and %d, want %d and %d", conv, len(gotW), len(gotB), len(wantW), len(wantB))
		}
		for k := range gotW {
			d := ulpDistance(float32(gotW[k]), float32(wantW[k]))
			worstW = max(worstW, d)
			if d > maxULPs {
				t.Errorf("conv %s weight[%d] mismatch: got %v, want %v", conv, k, gotW[k], wantW[k])
				break
			}
		}
		scale := 0.0
		for _, v := range wantB {
			scale = max(scale, math.Abs(v))
		}
		for k := range gotB {
			d := math.Abs(gotB[k] - wantB[k])
			worstB = max(worstB, d/max(scale, 1e-30))
			if d > maxULPs*0x1p-24*scale {
				t.Errorf("conv %s bias[%d] mismatch: got %v, want %v", conv, k, gotB[k], wantB[k])
				break
			}
		}
	}
	t.Logf("largest difference: weight %d float32 ulps, bias %.3g of the layer's largest bias", worstW, worstB)
}

// ulpDistance returns how many float32 values lie between a and b, plus
// one, or the maximum uint32 when their signs differ and neither is zero.
func ulpDistance(a, b float32) uint32 {
	if a == b {
		return 0
	}
	ia, ib := math.Float32bits(a), math.Float32bits(b)
	if (ia^ib)>>31 != 0 {
		if a == 0 || b == 0 {
			return ulpDistance(float32(math.Abs(float64(a))), float32(math.Abs(float64(b))))
		}
		return math.MaxUint32
	}
	if ia > ib {
		return ia - ib
	}
	return ib - ia
}
