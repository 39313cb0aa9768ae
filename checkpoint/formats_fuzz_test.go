package checkpoint

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// realSeed returns the bytes of a file in the shared checkpoint folder, or
// nil when the folder is absent.
func realSeed(f *testing.F, name string) []byte {
	b, err := os.ReadFile(filepath.Join(moduleRoot(f), "..", "shared", "checkpoints", name))
	if err != nil {
		return nil
	}
	return b
}

// checkAccepted reads every tensor of a file that OpenReaderAt accepted.
// The readers check every offset and element count against the data, so
// no read of an accepted file may fail.
func checkAccepted(t *testing.T, f *File) {
	budget := 1 << 22
	for _, m := range f.Models {
		for _, tn := range m.Tensors {
			n := tn.NumElements()
			if n > budget {
				return
			}
			budget -= n
			if _, err := tn.Float64s(); err != nil {
				t.Fatalf("tensor %s of an accepted file cannot be read: %v", tn.Name, err)
			}
		}
		if g := m.Graph; g != nil {
			g.Producers()
			g.Consumers()
		}
	}
}

// FuzzSafetensors feeds safetensors files to OpenReaderAt.
func FuzzSafetensors(f *testing.F) {
	if b := realSeed(f, "tinygrad_mnist_conv_relu_bn.safetensors"); b != nil {
		f.Add(b)
	}
	var buf bytes.Buffer
	if err := WriteSafetensors(&buf, writerSources(writerCases()), map[string]string{"k": "v"}); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	header := `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[8,9]}}`
	f.Add(safetensorsBytes(header, uint64(len(header)), make([]byte, 9)))

	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := OpenReaderAt("fuzz.safetensors", bytes.NewReader(data), int64(len(data)))
		if err != nil {
			if _, ok := err.(*FormatError); !ok {
				t.Fatalf("error is %T, want *FormatError: %v", err, err)
			}
			return
		}
		checkAccepted(t, file)
	})
}

// FuzzONNX feeds ONNX models to OpenReaderAt.
func FuzzONNX(f *testing.F) {
	for _, name := range []string{"ulfd_version-RFB-320.onnx", "ulfd_version-RFB-320_simplified.onnx"} {
		if b := realSeed(f, name); b != nil {
			f.Add(b)
		}
	}
	var graph []byte
	graph = pbBytes(graph, onnxGraphInitializer, onnxTensorMsg("w", onnxTensorTypeFloat, []int64{2}, pbBytes(nil, onnxTensorFloatData, packedFloat32(1, 2))))
	graph = pbBytes(graph, onnxGraphInitializer, onnxTensorMsg("h", onnxTensorTypeFloat16, []int64{1}, pbBytes(nil, onnxTensorInt32Data, packedVarints(0x3c00))))
	node := pbString(pbString(pbString(nil, onnxNodeInput, "x"), onnxNodeOutput, "y"), onnxNodeOpType, "Conv")
	node = pbBytes(node, onnxNodeAttribute, pbBytes(pbString(nil, onnxAttrName, "pads"), onnxAttrInts, packedVarints(1, 1)))
	graph = pbBytes(graph, onnxGraphNode, node)
	f.Add(onnxModelMsg(graph))

	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := OpenReaderAt("fuzz.onnx", bytes.NewReader(data), int64(len(data)))
		if err != nil {
			if _, ok := err.(*FormatError); !ok {
				t.Fatalf("error is %T, want *FormatError: %v", err, err)
			}
			return
		}
		checkAccepted(t, file)
	})
}

// FuzzTorchScript feeds TorchScript archives to OpenReaderAt, which also
// parses the class code for Final constants.
func FuzzTorchScript(f *testing.F) {
	if b := realSeed(f, "silero_vad_micro.jit"); b != nil {
		f.Add(b)
	}
	code := []byte("class BatchNorm1d(Module):\n  __parameters__ = [\"weight\", ]\n  eps : Final[float] = 0.001\n  stride : Final[Tuple[int]] = (2,)\n")
	module := newPickle().op("c__torch__.torch.nn.modules.batchnorm\nBatchNorm1d\n)\x81}").op("(").str("training").op("\x89u").op("b.").Bytes()
	f.Add(torchZip(f, zipEntry{name: "data.pkl", data: module}, zipEntry{name: "code/__torch__/torch/nn/modules/batchnorm.py", data: code}, zipEntry{name: "constants.pkl", data: []byte("\x80\x02).")}))

	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := OpenReaderAt("fuzz.jit", bytes.NewReader(data), int64(len(data)))
		if err != nil {
			if _, ok := err.(*FormatError); !ok {
				t.Fatalf("error is %T, want *FormatError: %v", err, err)
			}
			return
		}
		readAllTensors(file)
	})
}
