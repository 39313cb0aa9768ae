package checkpoint

import (
	"io"
	"testing"
)

func BenchmarkOpenReadULFDONNX(b *testing.B) { benchmarkOpen(b, "ulfd_version-RFB-320.onnx", true) }
func BenchmarkOpenReadULFDSimplifiedONNX(b *testing.B) {
	benchmarkOpen(b, "ulfd_version-RFB-320_simplified.onnx", true)
}
func BenchmarkOpenReadTinygradSafetensors(b *testing.B) {
	benchmarkOpen(b, "tinygrad_mnist_conv_relu_bn.safetensors", true)
}
func BenchmarkOpenReadSileroTorchScript(b *testing.B) {
	benchmarkOpen(b, "silero_vad_micro.jit", true)
}

// BenchmarkWriteSafetensors64MiB streams 16 float32 tensors of 4 MiB each
// to io.Discard, measuring the writer's own cost.
func BenchmarkWriteSafetensors64MiB(b *testing.B) {
	chunk := make([]byte, 4<<20)
	tensors := make([]TensorSource, 16)
	for i := range tensors {
		tensors[i] = TensorSource{Name: "layer" + string(rune('a'+i)) + ".weight", DType: Float32, Shape: []int{1 << 20}, WriteData: func(w io.Writer) error {
			_, err := w.Write(chunk)
			return err
		}}
	}
	b.SetBytes(int64(len(tensors) * len(chunk)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if err := WriteSafetensors(io.Discard, tensors, map[string]string{"k": "v"}); err != nil {
			b.Fatal(err)
		}
	}
}
