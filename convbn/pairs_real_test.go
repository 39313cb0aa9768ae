package convbn

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/convbn-diag/convbn-diag/checkpoint"
	"github.com/convbn-diag/convbn-diag/internal/testenv"
)

// pairsModuleRoot returns the directory holding go.mod.
func pairsModuleRoot(t *testing.T) string {
	t.Helper()
	return testenv.ModuleRoot(t)
}

// openRealCheckpoint opens a real checkpoint from the shared checkpoints
// folder beside the repository and returns its only model. The test skips
// when that folder is absent.
func openRealCheckpoint(t *testing.T, name string) (*checkpoint.File, *checkpoint.Model) {
	t.Helper()
	dir := filepath.Join(pairsModuleRoot(t), "..", "shared", "checkpoints")
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("real checkpoints not available: %s is missing", dir)
	}
	f, err := checkpoint.Open(filepath.Join(dir, name))
	if err != nil {
		t.Fatalf("open %s: %v", name, err)
	}
	t.Cleanup(func() { f.Close() })
	if len(f.Models) != 1 {
		t.Fatalf("%s: got %d models, want 1", name, len(f.Models))
	}
	return f, f.Models[0]
}

// comparePairSets reports every pair that is missing, extra or different.
func comparePairSets(t *testing.T, label string, got, want map[string]string) {
	t.Helper()
	for conv, bn := range want {
		switch g, ok := got[conv]; {
		case !ok:
			t.Errorf("%s: missing pair %s → %s", label, conv, bn)
		case g != bn:
			t.Errorf("%s: %s paired with %s, want %s", label, conv, g, bn)
		}
	}
	for conv, bn := range got {
		if _, ok := want[conv]; !ok {
			t.Errorf("%s: extra pair %s → %s", label, conv, bn)
		}
	}
}

// expectedRealPairs builds each file's pair set from its architecture as
// the model code defines it, not from the file's tensor order.
func expectedRealPairs() map[string]map[string]string {
	resnet20 := map[string]string{"conv1": "bn1"}
	for layer := 1; layer <= 3; layer++ {
		for block := 0; block < 3; block++ {
			for i := 1; i <= 2; i++ {
				p := fmt.Sprintf("layer%d.%d.", layer, block)
				resnet20[fmt.Sprintf("%sconv%d", p, i)] = fmt.Sprintf("%sbn%d", p, i)
			}
		}
	}

	// Mb_Tiny_RFB: conv_bn at base_net.0, conv_dw (depthwise 0→1,
	// pointwise 3→4) at 1..6 and 8..12, BasicRFB at 7.
	ulfd := map[string]string{"base_net.0.0": "base_net.0.1"}
	for i := 1; i <= 12; i++ {
		if i == 7 {
			continue
		}
		ulfd[fmt.Sprintf("base_net.%d.0", i)] = fmt.Sprintf("base_net.%d.1", i)
		ulfd[fmt.Sprintf("base_net.%d.3", i)] = fmt.Sprintf("base_net.%d.4", i)
	}
	rfb := []string{"branch0.0", "branch0.1", "branch0.2", "branch1.0", "branch1.1", "branch1.2",
		"branch2.0", "branch2.1", "branch2.2", "branch2.3", "ConvLinear", "shortcut"}
	for _, b := range rfb {
		ulfd["base_net.7."+b+".conv"] = "base_net.7." + b + ".bn"
	}

	kuangliu := map[string]string{}
	for _, i := range []int{0, 3, 7, 10, 14} {
		kuangliu[fmt.Sprintf("ConvPart.%d", i)] = fmt.Sprintf("ConvPart.%d", i+1)
	}

	dcgan := map[string]string{}
	for i := 0; i < 3; i++ {
		dcgan[fmt.Sprintf("gen.%d.0", i)] = fmt.Sprintf("gen.%d.1", i)
	}

	return map[string]map[string]string{
		"akamaster_resnet20-12fca82f.th":   resnet20,
		"ulfd_version-RFB-320.pth":         ulfd,
		"kuangliu_style_ckpt_convbias.pth": kuangliu,
		"dcgan_mnist_generator_convT.pth":  dcgan,
		"ecg1d_conv_relu_bn.pth":           {},
		"linear_bn1d_tabular_densenet.pth": {},
	}
}

func TestRealCheckpointPairs(t *testing.T) {
	for name, want := range expectedRealPairs() {
		t.Run(name, func(t *testing.T) {
			f, m := openRealCheckpoint(t, name)
			r, err := FindPairs(m, f.Metadata, Options{})
			if err != nil {
				t.Fatalf("FindPairs: %v", err)
			}
			comparePairSets(t, name, pairMap(r), want)
			if len(r.Ambiguous) != 0 {
				t.Errorf("ambiguous: %v, want none", r.Ambiguous)
			}
			for _, p := range r.Pairs {
				if p.BN.Eps != 1e-5 || p.BN.EpsSource != SourceDefault {
					t.Errorf("%s eps: got %g from %s, want 1e-05 from default", p.BN.Name, p.BN.Eps, p.BN.EpsSource)
				}
			}
		})
	}
}

func TestRealResNet20Prefix(t *testing.T) {
	_, m := openRealCheckpoint(t, "akamaster_resnet20-12fca82f.th")
	if m.StrippedPrefix != "module." {
		t.Fatalf("stripped prefix: got %q, want \"module.\"", m.StrippedPrefix)
	}
	// The user may name modules as the file spells them.
	r, err := FindPairs(m, nil, Options{NoPair: []string{"module.layer1.0.bn1"}})
	if err != nil {
		t.Fatalf("FindPairs: %v", err)
	}
	if len(r.Pairs) != 18 {
		t.Errorf("got %d pairs with one BatchNorm excluded, want 18", len(r.Pairs))
	}
	checkUnpairedReason(t, r, "layer1.0.conv1", "next module layer1.0.bn1 is excluded by --no-pair")
}

func TestRealYOLOv5nModuleTree(t *testing.T) {
	f, m := openRealCheckpoint(t, "ultralytics_yolov5n.pt")
	if m.Root == nil {
		t.Fatal("ultralytics_yolov5n.pt: no module tree")
	}
	r, err := FindPairs(m, f.Metadata, Options{Eps: 1e-5, EpsSet: true})
	if err != nil {
		t.Fatalf("FindPairs: %v", err)
	}

	// Every models.common.Conv unit X computes act(sdBN(sdConv(x))), and only
	// those units own a ".conv" child, so the pairs are X.conv → X.bn.
	want := map[string]string{}
	for _, ts := range m.Tensors {
		if prefix, ok := strings.CutSuffix(ts.Name, ".conv.weight"); ok {
			want[prefix+".conv"] = prefix + ".bn"
		}
	}
	if len(want) != 57 {
		t.Fatalf("found %d Conv units in the tensor names, want 57", len(want))
	}
	comparePairSets(t, "yolov5n", pairMap(r), want)

	for _, p := range r.Pairs {
		if p.Evidence != EvidenceModule {
			t.Errorf("%s evidence: got %s, want %s", p.Conv.Name, p.Evidence, EvidenceModule)
		}
		if p.BN.Eps != 0.001 || p.BN.EpsSource != SourceFile {
			t.Errorf("%s eps: got %g from %s, want 0.001 from file", p.BN.Name, p.BN.Eps, p.BN.EpsSource)
		}
		if p.BN.Momentum == nil || *p.BN.Momentum != 0.03 {
			t.Errorf("%s momentum: got %v, want 0.03", p.BN.Name, p.BN.Momentum)
		}
		if p.Conv.GroupsSource != SourceFile || p.Conv.Stride == nil {
			t.Errorf("%s: groups source %q, stride %v; want both from the file", p.Conv.Name, p.Conv.GroupsSource, p.Conv.Stride)
		}
	}
	if stem := r.Pairs[0].Conv; stem.Name != "model.0.conv" || fmt.Sprint(stem.Stride) != "[2 2]" || stem.Weight.Shape[2] != 6 {
		t.Errorf("stem: %s stride %v kernel %v, want model.0.conv, [2 2], 6×6", stem.Name, stem.Stride, stem.Weight.Shape[2:])
	}
	ignored := false
	for _, n := range r.Notes {
		ignored = ignored || strings.Contains(n, "--eps 1e-05 ignored for 57 BatchNorms")
	}
	if !ignored {
		t.Errorf("notes %q: want one saying --eps was ignored for 57 BatchNorms", r.Notes)
	}
	// The three Detect convs have a bias and no BatchNorm.
	for i := 0; i < 3; i++ {
		if unpairedReason(r, fmt.Sprintf("model.24.m.%d", i)) == "" {
			t.Errorf("Detect conv model.24.m.%d not listed as unpaired", i)
		}
	}
}

func TestRealULFDDepthwise(t *testing.T) {
	f, m := openRealCheckpoint(t, "ulfd_version-RFB-320.pth")
	r, err := FindPairs(m, f.Metadata, Options{})
	if err != nil {
		t.Fatalf("FindPairs: %v", err)
	}
	depthwise := 0
	for _, p := range r.Pairs {
		w := p.Conv.Weight.Shape
		if w[1] != 1 || w[0] == 1 {
			continue
		}
		depthwise++
		if p.Conv.Groups != w[0] || p.Conv.GroupsSource != SourceInferred {
			t.Errorf("%s (weight %v): groups %d (%q), want %d (inferred)", p.Conv.Name, w, p.Conv.Groups, p.Conv.GroupsSource, w[0])
		}
	}
	if depthwise != 11 {
		t.Errorf("got %d depthwise pairs, want 11", depthwise)
	}
	convs := 0
	for _, u := range r.Unpaired {
		if u.Kind == "conv" {
			convs++
		}
	}
	if convs != 17 {
		t.Errorf("got %d unpaired convs, want the 17 head convs", convs)
	}
}

func TestRealDCGANTransposed(t *testing.T) {
	f, m := openRealCheckpoint(t, "dcgan_mnist_generator_convT.pth")
	r, err := FindPairs(m, f.Metadata, Options{})
	if err != nil {
		t.Fatalf("FindPairs: %v", err)
	}
	for _, p := range r.Pairs {
		if !p.Conv.Transposed || p.Conv.Bias == nil || len(p.Notes) == 0 {
			t.Errorf("%s: transposed %v, bias %v, notes %q; want transposed with bias and a note", p.Conv.Name, p.Conv.Transposed, p.Conv.Bias != nil, p.Notes)
		}
	}
}
