package flagsnet

// generator is a permuted congruential generator (PCG-XSH-RR 64/32,
// O'Neill 2014). It is written out here, rather than taken from math/rand,
// so that the example's bytes depend on nothing that a Go release may
// change.
type generator struct {
	state uint64
}

const (
	pcgMultiplier = 6364136223846793005
	pcgIncrement  = 1442695040888963407
)

func newGenerator(seed uint64) *generator {
	g := &generator{}
	g.next()
	g.state += seed
	g.next()
	return g
}

// next returns 32 random bits.
func (g *generator) next() uint32 {
	old := g.state
	g.state = old*pcgMultiplier + pcgIncrement
	xorShifted := uint32(((old >> 18) ^ old) >> 27)
	rot := uint32(old >> 59)
	return xorShifted>>rot | xorShifted<<((-rot)&31)
}

// uniform returns a float64 uniform in [0, 1) with 53 random bits.
func (g *generator) uniform() float64 {
	hi := uint64(g.next()) >> 5 // 27 bits
	lo := uint64(g.next()) >> 6 // 26 bits
	return float64(hi<<26|lo) / (1 << 53)
}

// uniforms returns k values uniform in [lo, hi).
func (g *generator) uniforms(k int, lo, hi float64) []float64 {
	out := make([]float64, k)
	for i := range out {
		// The explicit conversion keeps the compiler from fusing the
		// multiply and add, which would change the last bit on some
		// platforms.
		out[i] = lo + float64((hi-lo)*g.uniform())
	}
	return out
}

// normals returns k approximately normal values with the given mean and
// standard deviation: the sum of 12 uniforms minus 6 (Irwin–Hall), which
// has variance 1 and needs no transcendental function, whose last bits
// vary between platforms.
func (g *generator) normals(k int, mean, std float64) []float64 {
	out := make([]float64, k)
	for i := range out {
		sum := 0.0
		for range 12 {
			sum += g.uniform()
		}
		out[i] = mean + float64(std*(sum-6))
	}
	return out
}
