package analysis

import (
	"encoding/binary"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/convbn-diag/convbn-diag/checkpoint"
)

// recordingReader serves float32 little-endian elements and records every
// read; it fails when forbidden is set.
type recordingReader struct {
	data      []byte
	forbidden bool
	reads     int
	maxRead   int
}

func (r *recordingReader) ReadAt(p []byte, off int64) (int, error) {
	if r.forbidden {
		return 0, errors.New("weight read although weight norms were not requested")
	}
	r.reads++
	r.maxRead = max(r.maxRead, len(p))
	if off < 0 || off+int64(len(p)) > int64(len(r.data)) {
		return 0, errors.New("read past end")
	}
	return copy(p, r.data[off:]), nil
}

func fileWeight(r *recordingReader, shape []int, values []float64) *checkpoint.Tensor {
	r.data = make([]byte, 4*len(values))
	for i, v := range values {
		binary.LittleEndian.PutUint32(r.data[4*i:], math.Float32bits(float32(v)))
	}
	st := checkpoint.NewFileStorage("0", checkpoint.Float32, int64(len(values)), r, 0, binary.LittleEndian, "test.pth")
	return &checkpoint.Tensor{Name: "features.0.weight", DType: checkpoint.Float32, Shape: shape, Strides: checkpoint.ContiguousStrides(shape), Storage: st}
}

func TestLayerSkipsWeightByDefault(t *testing.T) {
	s := pairSpec{
		shape:    []int{2, 3},
		weight:   []float64{1, 2, 3, 4, 5, 6},
		mean:     []float64{0, 0},
		variance: []float64{1, 1},
		eps:      1e-5,
	}
	p := s.pair()
	r := &recordingReader{forbidden: true}
	p.Conv.Weight = fileWeight(r, s.shape, s.weight)
	r.forbidden = true

	l, err := AnalyzePair("test.pth", p, DefaultOptions())
	if err != nil {
		t.Fatalf("default analysis read the weight: %v", err)
	}
	if l.Channels[0].HasWeightNorms {
		t.Error("weight norms set without being requested")
	}

	opts := DefaultOptions()
	opts.WeightNorms = true
	if _, err := AnalyzePair("test.pth", p, opts); err == nil || !strings.Contains(err.Error(), "features.0.weight") {
		t.Errorf("weight-norm error mismatch: got %v, want an error naming features.0.weight", err)
	}
}

func TestWeightNormsReadInChunks(t *testing.T) {
	rows, rowLen := 10, 12
	values := make([]float64, rows*rowLen)
	for i := range values {
		values[i] = float64(i%7) - 3
	}
	s := pairSpec{
		shape:    []int{rows, rowLen},
		weight:   values,
		mean:     make([]float64, rows),
		variance: make([]float64, rows),
		eps:      1e-5,
	}
	p := s.pair()
	r := &recordingReader{}
	p.Conv.Weight = fileWeight(r, s.shape, values)

	opts := DefaultOptions()
	opts.WeightNorms = true
	opts.ChunkElements = 3 * rowLen
	l, err := AnalyzePair("test.pth", p, opts)
	if err != nil {
		t.Fatal(err)
	}
	if r.reads != 4 || r.maxRead != 4*3*rowLen {
		t.Errorf("chunking mismatch: got %d reads of at most %d bytes, want 4 of at most %d", r.reads, r.maxRead, 4*3*rowLen)
	}
	norm, _ := foldOracle(s, make([]float64, rows))
	for c := range l.Channels {
		if !relClose(l.Channels[c].WeightNorm, norm[c], 1e-14, 0) {
			t.Errorf("channel %d weight norm mismatch: got %v, want %v", c, l.Channels[c].WeightNorm, norm[c])
		}
	}
}

func TestLayerShapeErrors(t *testing.T) {
	s := pairSpec{
		shape:    []int{3, 2},
		weight:   make([]float64, 6),
		mean:     []float64{0, 0},
		variance: []float64{1, 1},
		eps:      1e-5,
	}
	_, err := AnalyzePair("bad.pth", s.pair(), DefaultOptions())
	if err == nil || !strings.Contains(err.Error(), "bad.pth") || !strings.Contains(err.Error(), "features.1.running_mean") {
		t.Errorf("length mismatch error: got %v, want one naming bad.pth and features.1.running_mean", err)
	}

	s = pairSpec{shape: []int{4, 2}, groups: 3, weight: make([]float64, 8), mean: make([]float64, 4), variance: make([]float64, 4), eps: 1e-5}
	if _, err := AnalyzePair("bad.pth", s.pair(), DefaultOptions()); err == nil || !strings.Contains(err.Error(), "groups") {
		t.Errorf("groups error: got %v, want one about groups", err)
	}

	s = pairSpec{shape: []int{4}, weight: make([]float64, 4), mean: make([]float64, 4), variance: make([]float64, 4), eps: 1e-5}
	if _, err := AnalyzePair("bad.pth", s.pair(), DefaultOptions()); err == nil || !strings.Contains(err.Error(), "2 dimensions") {
		t.Errorf("1-D weight error: got %v, want one about dimensions", err)
	}
}
