package convbn

import (
	"math"
	"strings"
	"testing"

	"github.com/convbn-diag/convbn-diag/checkpoint"
)

// pairOmegas returns ω = γ/√(σ² + ε) of every channel of a pair's
// BatchNorm, computed with the pair's own ε.
func pairOmegas(t *testing.T, p Pair) []float64 {
	t.Helper()
	gamma, err := p.BN.Weight.Float64s()
	if err != nil {
		t.Fatalf("%s: read γ: %v", p.BN.Name, err)
	}
	variance, err := p.BN.RunningVar.Float64s()
	if err != nil {
		t.Fatalf("%s: read σ²: %v", p.BN.Name, err)
	}
	out := make([]float64, len(gamma))
	for c := range gamma {
		out[c] = gamma[c] / math.Sqrt(variance[c]+p.BN.Eps)
	}
	return out
}

// pairsByConv indexes pairs by conv name.
func pairsByConv(pairs []Pair) map[string]Pair {
	out := make(map[string]Pair, len(pairs))
	for _, p := range pairs {
		out[p.Conv.Name] = p
	}
	return out
}

func TestGraphPairsULFDMatchPth(t *testing.T) {
	_, onnxModel := openRealCheckpoint(t, "ulfd_version-RFB-320.onnx")
	_, pthModel := openRealCheckpoint(t, "ulfd_version-RFB-320.pth")
	if onnxModel.Graph == nil {
		t.Fatal("ONNX model has no graph")
	}
	got, err := FindPairs(onnxModel, nil, Options{})
	if err != nil {
		t.Fatalf("FindPairs(onnx): %v", err)
	}
	want, err := FindPairs(pthModel, nil, Options{})
	if err != nil {
		t.Fatalf("FindPairs(pth): %v", err)
	}
	if len(got.Pairs) != 35 {
		t.Errorf("ONNX pair count mismatch: got %d, want 35", len(got.Pairs))
	}
	gotSet, wantSet := map[string]string{}, map[string]string{}
	for _, p := range got.Pairs {
		gotSet[p.Conv.Name] = p.BN.Name
	}
	for _, p := range want.Pairs {
		wantSet[p.Conv.Name] = p.BN.Name
	}
	comparePairSets(t, "ulfd onnx vs pth", gotSet, wantSet)

	epsONNX := float64(float32(1e-5))
	momentum := map[float64]int{}
	depthwise := 0
	pth := pairsByConv(want.Pairs)
	for _, p := range got.Pairs {
		if p.Evidence != EvidenceGraph {
			t.Errorf("%s evidence mismatch: got %s, want %s", p.Conv.Name, p.Evidence, EvidenceGraph)
		}
		if p.BN.Eps != epsONNX || p.BN.EpsSource != SourceFile {
			t.Errorf("%s eps mismatch: got %v from %s, want %v from file", p.BN.Name, p.BN.Eps, p.BN.EpsSource, epsONNX)
		}
		if p.BN.Momentum == nil {
			t.Errorf("%s has no momentum", p.BN.Name)
		} else {
			momentum[*p.BN.Momentum]++
		}
		if p.Conv.GroupsSource != SourceFile || p.Conv.GeometrySource != SourceFile {
			t.Errorf("%s sources mismatch: groups from %q, geometry from %q, want file", p.Conv.Name, p.Conv.GroupsSource, p.Conv.GeometrySource)
		}
		if p.Conv.Groups > 1 {
			depthwise++
			if p.Conv.Groups != p.Conv.Weight.Shape[0] || p.Conv.Weight.Shape[1] != 1 {
				t.Errorf("%s: groups %d with weight %v is not depthwise", p.Conv.Name, p.Conv.Groups, p.Conv.Weight.Shape)
			}
		}
		if p.BN.NumBatchesTracked == nil {
			t.Errorf("%s: num_batches_tracked not found", p.BN.Name)
		}

		ref, ok := pth[p.Conv.Name]
		if !ok {
			continue
		}
		if ref.BN.Eps != 1e-5 {
			t.Errorf("%s: .pth eps %v, want 1e-5", ref.BN.Name, ref.BN.Eps)
		}
		gotOmega, wantOmega := pairOmegas(t, p), pairOmegas(t, ref)
		for c := range wantOmega {
			if rel := math.Abs(gotOmega[c]-wantOmega[c]) / math.Abs(wantOmega[c]); rel > 1e-7 {
				t.Errorf("%s channel %d ω mismatch: got %v, want %v (relative error %.2g)", p.BN.Name, c, gotOmega[c], wantOmega[c], rel)
			}
		}
	}
	// The RFB block's BasicConv uses torch momentum 0.01 (ONNX 0.99), the
	// other blocks torch's default 0.1 (ONNX 0.9).
	if momentum[0.1] != 23 || momentum[0.01] != 12 {
		t.Errorf("momentum counts mismatch: got %v, want 23 × 0.1 and 12 × 0.01", momentum)
	}
	if depthwise != 11 {
		t.Errorf("depthwise pair count mismatch: got %d, want 11", depthwise)
	}

	first := got.Pairs[0]
	if first.Conv.Name != "base_net.0.0" || !equalInts(first.Conv.Stride, []int{2, 2}) || !equalInts(first.Conv.Padding, []int{1, 1}) || !equalInts(first.Conv.Dilation, []int{1, 1}) {
		t.Errorf("first pair geometry mismatch: got %s stride %v padding %v dilation %v, want base_net.0.0 [2 2] [1 1] [1 1]", first.Conv.Name, first.Conv.Stride, first.Conv.Padding, first.Conv.Dilation)
	}
	dilated := pairsByConv(got.Pairs)["base_net.7.branch2.3.conv"]
	if !equalInts(dilated.Conv.Dilation, []int{5, 5}) || !equalInts(dilated.Conv.Padding, []int{5, 5}) {
		t.Errorf("base_net.7.branch2.3.conv geometry mismatch: got dilation %v padding %v, want [5 5] and [5 5]", dilated.Conv.Dilation, dilated.Conv.Padding)
	}

	// The 17 head convs have a bias and no BatchNorm.
	convs := 0
	for _, u := range got.Unpaired {
		if u.Kind == "conv" {
			convs++
		} else {
			t.Errorf("unexpected unpaired BatchNorm %s: %s", u.Name, u.Reason)
		}
		if u.Reason == "" {
			t.Errorf("unpaired %s has no reason", u.Name)
		}
	}
	if convs != 17 {
		t.Errorf("unpaired conv count mismatch: got %d, want 17", convs)
	}
	if !containsNote(got.Notes, "momentum is given in PyTorch's convention") {
		t.Errorf("notes do not explain the momentum convention: %q", got.Notes)
	}
}

func TestGraphPairsSimplifiedAlreadyFused(t *testing.T) {
	_, m := openRealCheckpoint(t, "ulfd_version-RFB-320_simplified.onnx")
	res, err := FindPairs(m, nil, Options{})
	if err != nil {
		t.Fatalf("FindPairs: %v", err)
	}
	if len(res.Pairs) != 0 {
		t.Errorf("pair count mismatch: got %d, want 0", len(res.Pairs))
	}
	if !containsNote(res.Notes, "no BatchNormalization nodes: this graph is already fused (52 of its 52 Conv nodes have a bias)") {
		t.Errorf("notes do not say the graph is already fused: %q", res.Notes)
	}
	if len(res.Unpaired) != 52 {
		t.Errorf("unpaired conv count mismatch: got %d, want 52", len(res.Unpaired))
	}
}

func TestSafetensorsTinygradNoPairs(t *testing.T) {
	f, m := openRealCheckpoint(t, "tinygrad_mnist_conv_relu_bn.safetensors")
	if f.Format != checkpoint.FormatSafetensors {
		t.Fatalf("format mismatch: got %s, want safetensors", f.Format)
	}
	res, err := FindPairs(m, f.Metadata, Options{})
	if err != nil {
		t.Fatalf("FindPairs: %v", err)
	}
	if len(res.Pairs) != 0 {
		t.Errorf("pair count mismatch: got %d, want 0 (a ReLU sits between each conv and BatchNorm)", len(res.Pairs))
	}
	for _, name := range []string{"layers.2", "layers.8"} {
		found := false
		for _, u := range res.Unpaired {
			if u.Name == name && strings.Contains(u.Reason, "index gap") {
				found = true
			}
		}
		if !found {
			t.Errorf("conv %s is not reported unpaired with an index gap: %+v", name, res.Unpaired)
		}
	}
}

func TestTorchScriptSileroPairs(t *testing.T) {
	f, m := openRealCheckpoint(t, "silero_vad_micro.jit")
	if f.Format != checkpoint.FormatTorchScript || m.Root == nil {
		t.Fatalf("format mismatch: got %s with module tree %v, want torchscript with a tree", f.Format, m.Root != nil)
	}
	res, err := FindPairs(m, f.Metadata, Options{})
	if err != nil {
		t.Fatalf("FindPairs: %v", err)
	}
	got := map[string]string{}
	for _, p := range res.Pairs {
		got[p.Conv.Name] = p.BN.Name
		if p.Evidence != EvidenceModule {
			t.Errorf("%s evidence mismatch: got %s, want %s", p.Conv.Name, p.Evidence, EvidenceModule)
		}
		if p.Conv.Bias == nil {
			t.Errorf("%s: conv bias missing", p.Conv.Name)
		}
		if p.BN.Eps != 1e-5 || p.BN.EpsSource != SourceFile {
			t.Errorf("%s eps mismatch: got %v from %s, want 1e-5 from the code constants", p.BN.Name, p.BN.Eps, p.BN.EpsSource)
		}
		if p.BN.Momentum == nil || *p.BN.Momentum != 0.1 || p.BN.MomentumSource != SourceFile {
			t.Errorf("%s momentum mismatch: got %v from %s, want 0.1 from file", p.BN.Name, p.BN.Momentum, p.BN.MomentumSource)
		}
		if p.Conv.Groups != 1 || p.Conv.GroupsSource != SourceFile || !equalInts(p.Conv.Stride, []int{2}) {
			t.Errorf("%s geometry mismatch: groups %d from %q, stride %v, want 1 from file and [2]", p.Conv.Name, p.Conv.Groups, p.Conv.GroupsSource, p.Conv.Stride)
		}
	}
	comparePairSets(t, "silero", got, map[string]string{"encoder.2": "encoder.3", "encoder.7": "encoder.8", "encoder.12": "encoder.13"})

	// The depthwise convs of each ConvBlock are followed by Identity.
	for _, u := range res.Unpaired {
		if u.Name == "encoder.0.0.dw_conv.0" && !strings.Contains(u.Reason, "Identity") {
			t.Errorf("encoder.0.0.dw_conv.0 reason %q does not name the Identity module", u.Reason)
		}
	}
}

func containsNote(notes []string, fragment string) bool {
	for _, n := range notes {
		if strings.Contains(n, fragment) {
			return true
		}
	}
	return false
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
