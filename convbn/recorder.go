package convbn

import (
	"sync"
	"time"
)

// Phase is the pass a Record describes.
type Phase string

// Passes of a training step.
const (
	PhaseForward  Phase = "forward"
	PhaseBackward Phase = "backward"
)

// Recorder receives one Record per forward and per backward pass of every
// block it is attached to. A block with a nil Recorder computes no norms and
// reads no clock.
type Recorder interface {
	Record(r *Record)
}

// Record is what one block reports for one pass. Norms are Euclidean norms
// over the whole tensor, computed in float64. A norm is NaN when the mode has
// no such quantity: a Deploy block has no W or γ, and a Train block has no
// fold because its statistics change with every batch.
//
// In Eval and Tune mode the fused quantities are the implied ones:
// W'_c = ω_c·W_c with ω from the running statistics, and
// G'_c = ∂L/∂W_c / ω_c. Dead channels (ω_c = 0) are left out of
// FusedWeightGradNorm and counted in DeadChannels. Gradient norms are
// those of the accumulated gradients after the backward pass, since
// gradients accumulate until ZeroGrad; forward records carry NaN there.
type Record struct {
	Block string
	// Step counts the block's forward passes, starting at 1. A backward
	// record carries the step of the forward it completes.
	Step  int
	Phase Phase
	Mode  Mode

	WeightNorm          float64 `json:"weight_norm"`
	WeightGradNorm      float64 `json:"weight_grad_norm"`
	GammaNorm           float64 `json:"gamma_norm"`
	GammaGradNorm       float64 `json:"gamma_grad_norm"`
	FusedWeightNorm     float64 `json:"fused_weight_norm"`
	FusedWeightGradNorm float64 `json:"fused_weight_grad_norm"`
	DeadChannels        int     `json:"dead_channels"`

	// Channels holds the per-channel norms when the block's RecordChannels
	// is set, nil otherwise.
	Channels *ChannelRecord

	// Held is what the block holds for backward after this pass: the
	// forward's retained tensors on a forward record, nothing on a
	// backward record because backward releases them.
	Held Held
	// Duration is the wall-clock time of the pass, excluding the time
	// spent computing this record.
	Duration time.Duration
}

// ChannelRecord holds per-output-channel values, indexed by channel. Slices
// that do not apply to the mode are nil; entries for dead channels are NaN
// in FusedWeightGradNorm.
type ChannelRecord struct {
	Omega               []float64 `json:"omega"`
	WeightNorm          []float64 `json:"weight_norm"`
	WeightGradNorm      []float64 `json:"weight_grad_norm"`
	FusedWeightNorm     []float64 `json:"fused_weight_norm"`
	FusedWeightGradNorm []float64 `json:"fused_weight_grad_norm"`
}

// Held lists what a block retains between forward and backward. Bytes
// counts activation- and parameter-sized tensors. PerChannelBytes counts
// vectors of one value per channel (batch statistics, ω, s), listed apart
// because they are O(C). The parameters themselves and the conv's reusable
// im2col scratch buffer (one sample's columns) are not counted.
type Held struct {
	Bytes           int64      `json:"bytes"`
	PerChannelBytes int64      `json:"per_channel_bytes"`
	Items           []HeldItem `json:"items"`
}

// HeldItem is one retained tensor.
type HeldItem struct {
	Name       string `json:"name"`
	Elements   int    `json:"elements"`
	Bytes      int64  `json:"bytes"`
	PerChannel bool   `json:"per_channel"`
}

func (h *Held) add(name string, elements int, elemSize int64, perChannel bool) {
	b := int64(elements) * elemSize
	h.Items = append(h.Items, HeldItem{Name: name, Elements: elements, Bytes: b, PerChannel: perChannel})
	if perChannel {
		h.PerChannelBytes += b
	} else {
		h.Bytes += b
	}
}

// MemoryRecorder keeps every Record in memory. It is safe for concurrent use.
type MemoryRecorder struct {
	mu      sync.Mutex
	records []Record
}

// Record stores a copy of r.
func (m *MemoryRecorder) Record(r *Record) {
	m.mu.Lock()
	m.records = append(m.records, *r)
	m.mu.Unlock()
}

// Records returns the stored records in arrival order.
func (m *MemoryRecorder) Records() []Record {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Record(nil), m.records...)
}
