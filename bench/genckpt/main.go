// Command genckpt writes a synthetic PyTorch zip checkpoint of a chosen
// size with convbn-diag's own writer, for the whole-process benchmarks in
// bench/. The network is a plain stack of 3×3 ConvBN blocks of one width;
// weights and statistics are seeded random numbers, so the file is the
// same for the same flags.
package main

import (
	"bufio"
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
	flag.Parse()
	if *out == "" || *sizeMB <= 0 || *width <= 0 {
		fmt.Fprintln(os.Stderr, "usage: genckpt -o FILE [-size-mb N] [-width C] [-seed S]")
		os.Exit(2)
	}
	if err := write(*out, int64(*sizeMB)*1_000_000, *width, *seed); err != nil {
		fmt.Fprintf(os.Stderr, "genckpt: %v\n", err)
		os.Exit(1)
	}
}

func write(path string, size int64, width int, seed uint64) error {
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
	return checkpoint.WriteTorchFile(path, tensors, nil)
}

// randomFloat32 returns a WriteData function streaming n float32 values
// drawn from f.
func randomFloat32(rng *rand.Rand, n int, f func(*rand.Rand) float64) func(io.Writer) error {
	return func(w io.Writer) error {
		bw := bufio.NewWriterSize(w, 1<<16)
		buf := make([]byte, 0, 4)
		for range n {
			buf = buf[:0]
			var err error
			buf, err = checkpoint.AppendElements(buf, checkpoint.Float32, []float64{f(rng)})
			if err != nil {
				return err
			}
			if _, err := bw.Write(buf); err != nil {
				return err
			}
		}
		return bw.Flush()
	}
}
