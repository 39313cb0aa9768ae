// Command genckpt writes a synthetic checkpoint of a chosen size with
// convbn-diag's own writers, a PyTorch zip checkpoint (-format pt) or a
// safetensors file (-format safetensors), for the whole-process benchmarks
// in bench/. The network is a plain stack of 3×3 ConvBN blocks of one
// width; weights and statistics are seeded random numbers, so the file is
// the same for the same flags.
package main

import (
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"

	"github.com/convbn-diag/convbn-diag/checkpoint"
)

func main() {
	out := flag.String("o", "", "output `FILE` (required)")
	sizeMB := flag.Int("size-mb", 100, "approximate file size in MB (10^6 bytes)")
	width := flag.Int("width", 512, "channels of every conv")
	seed := flag.Uint64("seed", 1, "random seed")
	format := flag.String("format", "pt", "output format: pt (PyTorch zip) or safetensors")
	flag.Parse()
	if *out == "" || *sizeMB <= 0 || *width <= 0 || (*format != "pt" && *format != "safetensors") {
		fmt.Fprintln(os.Stderr, "usage: genckpt -o FILE [-size-mb N] [-width C] [-seed S] [-format pt|safetensors]")
		os.Exit(2)
	}
	if err := write(*out, *format, int64(*sizeMB)*1_000_000, *width, *seed); err != nil {
		fmt.Fprintf(os.Stderr, "genckpt: %v\n", err)
		os.Exit(1)
	}
}

func write(path, format string, size int64, width int, seed uint64) error {
	convBytes := int64(width) * int64(width) * 9 * 4
	layers := int(max(1, size/convBytes))

	var tensors []checkpoint.TensorSource
	for i := range layers {
		rng := rand.New(rand.NewPCG(seed, uint64(i)))
		conv := fmt.Sprintf("features.%d", 2*i)
		bn := fmt.Sprintf("features.%d", 2*i+1)
		fan := float64(width * 9)
		tensors = append(tensors, checkpoint.TensorSource{
			Name: conv + ".weight", DType: checkpoint.Float32, Shape: []int{width, width, 3, 3},
			WriteData: randomFloat32(rng, width*width*9, func(r *rand.Rand) float64 { return r.NormFloat64() / math.Sqrt(fan) }),
		})
		vec := func(name string, f func(r *rand.Rand) float64) {
			tensors = append(tensors, checkpoint.TensorSource{
				Name: bn + "." + name, DType: checkpoint.Float32, Shape: []int{width},
				WriteData: randomFloat32(rng, width, f),
			})
		}
		vec("weight", func(r *rand.Rand) float64 { return math.Exp(r.NormFloat64() - 1) })
		vec("bias", func(r *rand.Rand) float64 { return 0.1 * r.NormFloat64() })
		vec("running_mean", func(r *rand.Rand) float64 { return 0.1 * r.NormFloat64() })
		vec("running_var", func(r *rand.Rand) float64 { return math.Exp(r.NormFloat64()) })
	}
	if format == "safetensors" {
		return checkpoint.WriteSafetensorsFile(path, tensors, nil)
	}
	return checkpoint.WriteTorchFile(path, tensors, nil)
}

// randomFloat32 returns a WriteData function streaming n float32 values
// drawn from f, encoded a batch at a time.
func randomFloat32(rng *rand.Rand, n int, f func(*rand.Rand) float64) func(io.Writer) error {
	return func(w io.Writer) error {
		const batch = 1 << 14
		values := make([]float64, 0, batch)
		var buf []byte
		for done := 0; done < n; done += len(values) {
			values = values[:0]
			for range min(batch, n-done) {
				values = append(values, f(rng))
			}
			var err error
			if buf, err = checkpoint.AppendElements(buf[:0], checkpoint.Float32, values); err != nil {
				return err
			}
			if _, err := w.Write(buf); err != nil {
				return err
			}
		}
		return nil
	}
}
