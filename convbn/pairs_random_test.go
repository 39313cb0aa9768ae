package convbn

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/convbn-diag/convbn-diag/checkpoint"
)

// randomStateDict builds a state dict of convs, BatchNorms, Linear layers
// and norm layers without running statistics, with random names, sizes and
// nesting, some of them malformed.
func randomStateDict(rng *rand.Rand) *checkpoint.Model {
	parents := []string{"", "features", "layer1.0", "block.conv", "net.1", "top"}
	children := []string{"conv1", "bn1", "conv2", "bn2", "norm", "fc", "0", "1", "2", "3", "downsample.0", "downsample.1"}
	sizes := []int{1, 2, 3, 4, 8}
	var groups [][]*checkpoint.Tensor
	used := map[string]bool{}
	for range 1 + rng.IntN(12) {
		parent := parents[rng.IntN(len(parents))]
		name := children[rng.IntN(len(children))]
		switch parent {
		case "":
		case "top":
			name = "" // tensors named "weight", "running_mean", ... at the top level
		default:
			name = parent + "." + name
		}
		if used[name] {
			continue
		}
		used[name] = true
		a, b := sizes[rng.IntN(len(sizes))], sizes[rng.IntN(len(sizes))]
		switch rng.IntN(6) {
		case 0, 1:
			shape := []int{a, b}
			for range 1 + rng.IntN(3) {
				shape = append(shape, 1+rng.IntN(3))
			}
			groups = append(groups, sdConv(name, rng.IntN(2) == 0, shape...))
		case 2, 3:
			ts := sdBN(name, a)
			if rng.IntN(8) == 0 {
				ts[3] = sdTensor(name+".running_var", b) // malformed when a ≠ b
			}
			groups = append(groups, ts)
		case 4:
			groups = append(groups, sdLinear(name, a, b))
		default:
			groups = append(groups, []*checkpoint.Tensor{sdTensor(name+".weight", a), sdTensor(name+".bias", a)})
		}
	}
	return sdModel(groups...)
}

func TestFindPairsRandomInvariants(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var errs, pairs, ambiguous int
	for i := range 3000 {
		m := randomStateDict(rng)
		r, err := FindPairs(m, nil, Options{})
		if err != nil {
			errs++
			continue
		}
		pairs += len(r.Pairs)
		ambiguous += len(r.Ambiguous)

		idx := indexLayers(m)
		seen := map[string]int{}
		for _, p := range r.Pairs {
			seen[p.Conv.Name]++
			seen[p.BN.Name]++
			conv, bnLayer := idx.byName[p.Conv.Name], idx.byName[p.BN.Name]
			if conv.parent() != bnLayer.parent() || conv.order > bnLayer.order {
				t.Fatalf("model %d: pair %s → %s crosses parents or runs backwards", i, p.Conv.Name, p.BN.Name)
			}
			if p.Conv.OutChannels() != p.BN.RunningMean.Shape[0] {
				t.Fatalf("model %d: pair %s → %s: %d output channels, BatchNorm %d", i, p.Conv.Name, p.BN.Name, p.Conv.OutChannels(), p.BN.RunningMean.Shape[0])
			}
		}
		for _, u := range r.Unpaired {
			seen[u.Name]++
			if u.Reason == "" || u.Reason == "no rule paired it" {
				t.Fatalf("model %d: %s unpaired without a reason", i, u.Name)
			}
		}
		for _, a := range r.Ambiguous {
			seen[a.Name]++
		}
		for _, l := range idx.layers {
			isConvOrBN := l.kindByTensors() == kindConv || l.kindByTensors() == kindBatchNorm
			if isConvOrBN && seen[l.name] != 1 {
				t.Fatalf("model %d: %s listed %d times, want once\n%s", i, l.name, seen[l.name], describeModel(m))
			}
		}
	}

	// The generator must reach every outcome, or the checks above prove
	// little.
	t.Logf("3000 models: %d rejected as malformed, %d pairs, %d ambiguous entries", errs, pairs, ambiguous)
	if errs == 0 || pairs == 0 || ambiguous == 0 {
		t.Errorf("generator too narrow: %d errors, %d pairs, %d ambiguous entries; want each above 0", errs, pairs, ambiguous)
	}
}

// describeModel lists a model's tensors for a failure message.
func describeModel(m *checkpoint.Model) string {
	s := ""
	for _, t := range m.Tensors {
		s += fmt.Sprintf("  %s %v\n", t.Name, t.Shape)
	}
	return s
}
