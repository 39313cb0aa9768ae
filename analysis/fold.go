package analysis

import (
	"fmt"

	"github.com/convbn-diag/convbn-diag/convbn"
)

// Fold is the fold of one Conv→BatchNorm pair into its conv, in float64:
// the fused weight W'_c = ω_c·W_c and the fused bias b'_c = β_c + ω_c(b_c − μ_c)
// of every output channel c.
type Fold struct {
	Pair   *convbn.Pair
	Groups int // at least 1

	// Omega holds ω_c = γ_c/√(σ²_c+ε) and FusedBias b'_c, per output
	// channel. Either is NaN or ±Inf for a channel listed in NonFinite.
	Omega     []float64
	FusedBias []float64

	// Layer is the pair's analysis (without weight norms), whose channel
	// flags explain a non-finite ω or b'.
	Layer *Layer
}

// NewFold reads the pair's BatchNorm vectors and conv bias and computes ω
// and b' per output channel. It reads no weight element. file names the
// checkpoint in errors.
func NewFold(file string, p *convbn.Pair) (*Fold, error) {
	l, err := AnalyzePair(file, p, DefaultOptions())
	if err != nil {
		return nil, err
	}
	f := &Fold{
		Pair:      p,
		Groups:    l.Groups,
		Omega:     make([]float64, len(l.Channels)),
		FusedBias: make([]float64, len(l.Channels)),
		Layer:     l,
	}
	for c := range l.Channels {
		f.Omega[c] = l.Channels[c].Omega
		f.FusedBias[c] = l.Channels[c].FusedBias
	}
	return f, nil
}

// NonFinite returns the output channels whose ω or b' is NaN or infinite,
// such as a channel with σ²+ε ≤ 0. Folding such a channel would write
// NaN or Inf into the fused weights.
func (f *Fold) NonFinite() []int {
	var bad []int
	for c := range f.Omega {
		if !isFinite(f.Omega[c]) || !isFinite(f.FusedBias[c]) {
			bad = append(bad, c)
		}
	}
	return bad
}

// RowLen returns the number of weight elements in one slice along
// dimension 0 of the conv weight.
func (f *Fold) RowLen() int {
	n := 1
	for _, d := range f.Pair.Conv.Weight.Shape[1:] {
		n *= d
	}
	return n
}

// ChannelOf returns the output channel that element k of row i (a slice
// along weight dimension 0, row-major) belongs to. For an ordinary,
// grouped or depthwise conv that is i. A transposed conv's weight is
// [C_in, C_out/G, k…], and element [i, j, …] feeds output channel
// g(i)·(C_out/G) + j with g(i) = ⌊i/(C_in/G)⌋.
func (f *Fold) ChannelOf(i, k int) int {
	conv := &f.Pair.Conv
	if !conv.Transposed {
		return i
	}
	shape := conv.Weight.Shape
	outPerGroup := shape[1]
	inner := f.RowLen() / outPerGroup
	inPerGroup := shape[0] / f.Groups
	return (i/inPerGroup)*outPerGroup + k/inner
}

// ScaleRows multiplies rows [lo, hi) along weight dimension 0, held
// row-major in x, by their channels' ω in place, turning W into W'.
func (f *Fold) ScaleRows(x []float64, lo, hi int) error {
	rowLen := f.RowLen()
	if len(x) != (hi-lo)*rowLen {
		return fmt.Errorf("fold %s: %d elements for rows %d to %d of %d elements each", f.Pair.Conv.Name, len(x), lo, hi, rowLen)
	}
	conv := &f.Pair.Conv
	for i := lo; i < hi; i++ {
		row := x[(i-lo)*rowLen : (i-lo+1)*rowLen]
		if !conv.Transposed {
			scaleBy(row, f.Omega[i])
			continue
		}
		outPerGroup := conv.Weight.Shape[1]
		inner := rowLen / max(outPerGroup, 1)
		base := f.ChannelOf(i, 0)
		for j := range outPerGroup {
			scaleBy(row[j*inner:(j+1)*inner], f.Omega[base+j])
		}
	}
	return nil
}

func scaleBy(xs []float64, a float64) {
	for i := range xs {
		xs[i] *= a
	}
}

// FusedWeightChunks reads the conv weight in slices along dimension 0 of
// about chunk elements (DefaultChunkElements when chunk ≤ 0), turns each
// into W' and passes it to fn with its row range. The slice passed to fn
// is reused for the next chunk. Only one chunk is held at a time.
func (f *Fold) FusedWeightChunks(file string, chunk int, fn func(lo, hi int, fused []float64) error) error {
	w := f.Pair.Conv.Weight
	if len(w.Strides) != len(w.Shape) {
		return fmt.Errorf("%s: conv %s: weight %s has %d strides for %d dimensions", file, f.Pair.Conv.Name, w.Name, len(w.Strides), len(w.Shape))
	}
	if chunk <= 0 {
		chunk = DefaultChunkElements
	}
	rows, rowLen := w.Shape[0], f.RowLen()
	perChunk := 1
	if rowLen > 0 && chunk/rowLen > 1 {
		perChunk = chunk / rowLen
	}
	var buf []float64
	for lo := 0; lo < rows; lo += perChunk {
		hi := min(lo+perChunk, rows)
		x, err := readRows(w, lo, hi, buf)
		if err != nil {
			return fmt.Errorf("%s: conv %s: %w", file, f.Pair.Conv.Name, err)
		}
		buf = x
		if err := f.ScaleRows(x, lo, hi); err != nil {
			return err
		}
		if err := fn(lo, hi, x); err != nil {
			return err
		}
	}
	return nil
}
