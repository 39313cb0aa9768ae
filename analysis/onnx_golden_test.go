package analysis

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

// onnxTensor is an ONNX TensorProto initializer with float data.
type onnxTensor struct {
	dims []int
	data []float64
}

// protoFields calls fn for each field of one protobuf message.
func protoFields(b []byte, fn func(num protowire.Number, typ protowire.Type, value []byte, varint uint64) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		var value []byte
		var varint uint64
		switch typ {
		case protowire.BytesType:
			value, n = protowire.ConsumeBytes(b)
		case protowire.VarintType:
			varint, n = protowire.ConsumeVarint(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if err := fn(num, typ, value, varint); err != nil {
			return err
		}
	}
	return nil
}

// firstConvInitializers returns the weight and bias initializers of the
// first Conv node of an ONNX model. Field numbers are those of onnx.proto:
// ModelProto.graph = 7; GraphProto.node = 1, initializer = 5;
// NodeProto.input = 1, op_type = 4; TensorProto.dims = 1, float_data = 4,
// name = 8, raw_data = 9.
func firstConvInitializers(model []byte) (weight, bias *onnxTensor, err error) {
	var graph []byte
	if err := protoFields(model, func(num protowire.Number, _ protowire.Type, v []byte, _ uint64) error {
		if num == 7 {
			graph = v
		}
		return nil
	}); err != nil {
		return nil, nil, err
	}

	var convInputs []string
	initializers := map[string]*onnxTensor{}
	err = protoFields(graph, func(num protowire.Number, _ protowire.Type, v []byte, _ uint64) error {
		switch num {
		case 1:
			if convInputs != nil {
				return nil
			}
			var inputs []string
			var op string
			if err := protoFields(v, func(n protowire.Number, _ protowire.Type, s []byte, _ uint64) error {
				switch n {
				case 1:
					inputs = append(inputs, string(s))
				case 4:
					op = string(s)
				}
				return nil
			}); err != nil {
				return err
			}
			if op == "Conv" {
				convInputs = inputs
			}
		case 5:
			name, tensor, err := parseTensorProto(v)
			if err != nil {
				return err
			}
			initializers[name] = tensor
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	if len(convInputs) < 3 {
		return nil, nil, fmt.Errorf("first Conv node has inputs %q, want X, W and B", convInputs)
	}
	weight, bias = initializers[convInputs[1]], initializers[convInputs[2]]
	if weight == nil || bias == nil {
		return nil, nil, fmt.Errorf("initializers %q or %q not found", convInputs[1], convInputs[2])
	}
	return weight, bias, nil
}

func parseTensorProto(b []byte) (string, *onnxTensor, error) {
	var name string
	t := &onnxTensor{}
	err := protoFields(b, func(num protowire.Number, typ protowire.Type, v []byte, varint uint64) error {
		switch {
		case num == 1 && typ == protowire.VarintType:
			t.dims = append(t.dims, int(varint))
		case num == 1 && typ == protowire.BytesType:
			for len(v) > 0 {
				d, n := protowire.ConsumeVarint(v)
				if n < 0 {
					return protowire.ParseError(n)
				}
				t.dims = append(t.dims, int(d))
				v = v[n:]
			}
		case num == 4 && typ == protowire.BytesType:
			for i := 0; i+4 <= len(v); i += 4 {
				t.data = append(t.data, float64(math.Float32frombits(binary.LittleEndian.Uint32(v[i:]))))
			}
		case num == 8:
			name = string(v)
		case num == 9:
			for i := 0; i+4 <= len(v); i += 4 {
				t.data = append(t.data, float64(math.Float32frombits(binary.LittleEndian.Uint32(v[i:]))))
			}
		}
		return nil
	})
	return name, t, err
}

func TestFoldMatchesSimplifiedONNX(t *testing.T) {
	dir := checkpointDir(t)
	onnxPath := filepath.Join(dir, "ulfd_version-RFB-320_simplified.onnx")
	model, err := os.ReadFile(onnxPath)
	if err != nil {
		t.Fatalf("read %s: %v", onnxPath, err)
	}
	wantW, wantB, err := firstConvInitializers(model)
	if err != nil {
		t.Fatalf("%s: %v", onnxPath, err)
	}

	f, results, err := openPairs(t, filepath.Join(dir, "ulfd_version-RFB-320.pth"))
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for i := range results[0].Pairs {
		p := &results[0].Pairs[i]
		if p.Conv.Name != "base_net.0.0" {
			continue
		}
		found = true
		if p.BN.Eps != 1e-5 {
			t.Fatalf("base_net.0.1 eps mismatch: got %g, want 1e-5", p.BN.Eps)
		}
		opts := DefaultOptions()
		opts.WeightNorms = true
		l, err := AnalyzePair(f.Path, p, opts)
		if err != nil {
			t.Fatal(err)
		}
		w, err := p.Conv.Weight.Float64s()
		if err != nil {
			t.Fatal(err)
		}
		if len(w) != len(wantW.data) || len(l.Channels) != len(wantB.data) {
			t.Fatalf("size mismatch: got weight %d and %d channels, ONNX has %d (dims %v) and %d", len(w), len(l.Channels), len(wantW.data), wantW.dims, len(wantB.data))
		}

		rowLen := len(w) / len(l.Channels)
		maxW, maxB := 0.0, 0.0
		for k, x := range w {
			c := k / rowLen
			maxW = math.Max(maxW, math.Abs(l.Channels[c].Omega*x-wantW.data[k]))
		}
		for c, ch := range l.Channels {
			maxB = math.Max(maxB, math.Abs(ch.FusedBias-wantB.data[c]))

			row := wantW.data[c*rowLen : (c+1)*rowLen]
			sum := 0.0
			for _, x := range row {
				sum += x * x
			}
			if got, want := ch.FusedWeightNorm, math.Sqrt(sum); math.Abs(got-want) > 1e-6 {
				t.Errorf("channel %d fused weight norm mismatch: got %v, want %v", c, got, want)
			}
		}
		if maxW > 1e-6 || maxB > 1e-6 {
			t.Errorf("fold differs from the simplified ONNX: max |ΔW'| = %g, max |Δb'| = %g, want ≤ 1e-6", maxW, maxB)
		}
		t.Logf("max |ΔW'| = %g, max |Δb'| = %g", maxW, maxB)
	}
	if !found {
		t.Fatal("pair base_net.0.0 → base_net.0.1 not found in ulfd_version-RFB-320.pth")
	}
}
