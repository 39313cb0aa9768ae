package experiment

import "math/rand/v2"

// randStream separates the random streams of one seed: initialization,
// batch order and power-iteration start vectors never share numbers.
const (
	streamBatches = 0x62617463
	streamHead    = 0x68656164
	streamPower   = 0x706f7765
)

func newRand(seed uint64) *rand.Rand { return newRandStream(seed, streamBatches) }

func newRandStream(seed, stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, stream))
}
