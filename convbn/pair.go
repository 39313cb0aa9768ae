package convbn

import "github.com/convbn-diag/convbn-diag/checkpoint"

// Source is where a setting such as ε came from.
type Source string

// Sources of a setting, strongest first.
const (
	SourceFile    Source = "file"    // stored in the checkpoint (module attribute, metadata, ONNX attribute)
	SourceFlag    Source = "flag"    // given on the command line
	SourceDefault Source = "default" // PyTorch's default, because the file and flags give none
	// SourceInferred marks a value derived from tensor shapes, such as the
	// groups of a conv in a state dict, which does not store them.
	SourceInferred Source = "inferred"
)

// Evidence is the reason a conv and a BatchNorm were paired.
type Evidence string

// Kinds of evidence, strongest first.
const (
	EvidenceOverride  Evidence = "override"         // --pair CONV=BN
	EvidenceGraph     Evidence = "graph"            // ONNX graph edge
	EvidenceModule    Evidence = "module-structure" // pickled nn.Module tree
	EvidenceMetadata  Evidence = "layer-metadata"   // convbn-diag's stored layer list
	EvidenceSeqIndex  Evidence = "sequential-index" // Sequential indices i and i+1
	EvidenceNameOrder Evidence = "name-order"       // names and order in one parent, channels match
)

// Conv is the convolution of a pair.
type Conv struct {
	// Name is the module path, such as "layer1.0.conv1".
	Name   string
	Weight *checkpoint.Tensor
	Bias   *checkpoint.Tensor // nil when the conv has no bias

	Transposed bool
	Groups     int // 1 unless the file or a flag gives another value
	// GroupsSource is SourceFile or SourceInferred, or "" when the groups
	// are unknown and Groups is 1 by assumption.
	GroupsSource Source

	// Geometry, one entry per spatial dimension; nil when the file does not
	// store it.
	Stride, Padding, Dilation []int
	// GeometrySource is SourceFile when the geometry above came from the
	// file, "" when it is unknown.
	GeometrySource Source
}

// OutChannels returns the number of output channels: weight dimension 0 for
// an ordinary conv, dimension 1 times the groups for a transposed one.
func (c *Conv) OutChannels() int {
	if len(c.Weight.Shape) < 2 {
		return 0
	}
	if c.Transposed {
		g := c.Groups
		if g < 1 {
			g = 1
		}
		return c.Weight.Shape[1] * g
	}
	return c.Weight.Shape[0]
}

// BatchNorm is the BatchNorm of a pair.
type BatchNorm struct {
	// Name is the module path, such as "layer1.0.bn1".
	Name string
	// Weight (γ) and Bias (β) are nil when the BatchNorm is not affine.
	Weight, Bias      *checkpoint.Tensor
	RunningMean       *checkpoint.Tensor
	RunningVar        *checkpoint.Tensor
	NumBatchesTracked *checkpoint.Tensor // nil when the file has none

	Eps       float64
	EpsSource Source
	// Momentum is nil for a cumulative average or when the file does not
	// store it; MomentumSource says which.
	Momentum       *float64
	MomentumSource Source
	Affine         bool
}

// Pair is one foldable Conv→BatchNorm block.
type Pair struct {
	Conv     Conv
	BN       BatchNorm
	Evidence Evidence
	// Notes are remarks about this pair, such as a transposed conv that
	// was recognized from its weight shape alone.
	Notes []string
}

// Unpaired is a conv or BatchNorm that is not part of any pair.
type Unpaired struct {
	Name   string `json:"name"`
	Kind   string `json:"kind"` // "conv" or "batchnorm"
	Reason string `json:"reason"`
}

// Ambiguity is a conv or BatchNorm whose partner the evidence cannot settle.
type Ambiguity struct {
	Name       string   `json:"name"`
	Candidates []string `json:"candidates"`
	Reason     string   `json:"reason"`
}

// Result is the outcome of pair discovery on one model, with pairs in
// network order.
type Result struct {
	Pairs     []Pair
	Unpaired  []Unpaired
	Ambiguous []Ambiguity
	// Notes are remarks about the model as a whole, such as "eps taken from
	// --eps for 19 BatchNorms".
	Notes []string
}
