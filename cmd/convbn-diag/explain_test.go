package main

import (
	"encoding/json"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/convbn-diag/convbn-diag/reports"
)

// channelJSON holds the per-channel numbers of analyze's JSON report that
// explain prints; null becomes nil.
type channelJSON struct {
	Gamma           *float64 `json:"gamma"`
	InvStd          *float64 `json:"inv_std"`
	Omega           *float64 `json:"omega"`
	FusedBias       *float64 `json:"fused_bias"`
	DistortionSGD   *float64 `json:"distortion_sgd"`
	DistortionAdam  *float64 `json:"distortion_adam"`
	WeightNorm      *float64 `json:"weight_norm"`
	FusedWeightNorm *float64 `json:"fused_weight_norm"`
}

type layerJSON struct {
	Conv     string        `json:"conv"`
	Eps      float64       `json:"eps"`
	Risk     any           `json:"risk"`
	Channels []channelJSON `json:"channels"`
}

// analyzeLayerJSON runs analyze --per-channel -f json with args and
// returns the layer of conv.
func analyzeLayerJSON(t *testing.T, conv string, args ...string) layerJSON {
	t.Helper()
	code, out, errOut := runCLI(t, append([]string{"analyze", "--per-channel", "-f", "json"}, args...)...)
	if code != 0 {
		t.Fatalf("analyze exit %d: %s", code, errOut)
	}
	var doc struct {
		Files []struct {
			Models []struct {
				Layers []layerJSON `json:"layers"`
			} `json:"models"`
		} `json:"files"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("analyze JSON does not parse: %v", err)
	}
	for _, m := range doc.Files[0].Models {
		for _, l := range m.Layers {
			if l.Conv == conv {
				return l
			}
		}
	}
	t.Fatalf("analyze reported no layer %s", conv)
	return layerJSON{}
}

// checkExplainMatchesJSON checks that explain's text for channels of a
// layer carries analyze's numbers for them.
func checkExplainMatchesJSON(t *testing.T, explained string, l layerJSON, channels []int) {
	t.Helper()
	for _, c := range channels {
		ch := l.Channels[c]
		fields := map[string]*float64{
			"gamma": ch.Gamma, "inv_std": ch.InvStd, "omega": ch.Omega, "fused_bias": ch.FusedBias,
			"distortion_sgd": ch.DistortionSGD, "distortion_adam": ch.DistortionAdam,
			"weight_norm": ch.WeightNorm, "fused_weight_norm": ch.FusedWeightNorm,
		}
		for name, v := range fields {
			if v == nil {
				continue
			}
			if want := reports.ExplainNumber(*v); !strings.Contains(explained, want) {
				t.Errorf("%s channel %d: explain lacks analyze's %s = %s", l.Conv, c, name, want)
			}
		}
		if !strings.Contains(explained, "Channel "+strconv.Itoa(c)) {
			t.Errorf("%s: explain does not cover channel %d", l.Conv, c)
		}
	}
}

func TestExplainMatchesAnalyzeExample(t *testing.T) {
	for _, opt := range []string{"sgd", "adam"} {
		l := analyzeLayerJSON(t, "features.6", "--example", "--optimizer", opt)
		code, out, errOut := runCLI(t, "explain", "--example", "--optimizer", opt, "--channel", "14,3", "features.6")
		if code != 0 {
			t.Fatalf("explain exit %d: %s", code, errOut)
		}
		checkExplainMatchesJSON(t, out, l, []int{14, 3})
	}
}

func TestExplainByBatchNormName(t *testing.T) {
	code, byConv, _ := runCLI(t, "explain", "--example", "features.3")
	if code != 0 {
		t.Fatalf("explain features.3 exit %d", code)
	}
	code, byBN, _ := runCLI(t, "explain", "--example", "features.4")
	if code != 0 {
		t.Fatalf("explain features.4 exit %d", code)
	}
	if byConv != byBN {
		t.Errorf("explaining the conv and its BatchNorm gave different text")
	}
}

func TestExplainMatchesAnalyzeResNet(t *testing.T) {
	ckpt := filepath.Join(sharedCheckpoints(t), "akamaster_resnet20-12fca82f.th")
	l := analyzeLayerJSON(t, "layer3.2.conv1", ckpt)
	code, out, errOut := runCLI(t, "explain", ckpt, "layer3.2.conv1")
	if code != 0 {
		t.Fatalf("explain exit %d: %s", code, errOut)
	}
	// Without --channel explain covers the extremes: find them in the JSON.
	argMax, argMin := -1, -1
	for c, ch := range l.Channels {
		if ch.DistortionSGD == nil {
			continue
		}
		if argMax < 0 || *ch.DistortionSGD > *l.Channels[argMax].DistortionSGD {
			argMax = c
		}
		if argMin < 0 || *ch.DistortionSGD < *l.Channels[argMin].DistortionSGD {
			argMin = c
		}
	}
	checkExplainMatchesJSON(t, out, l, []int{argMax, argMin})
	if !strings.Contains(out, "Channel "+strconv.Itoa(argMax)+" (largest D_SGD") {
		t.Errorf("explain does not name channel %d as the largest D_SGD", argMax)
	}
}

func TestExplainUnknownLayer(t *testing.T) {
	code, _, errOut := runCLI(t, "explain", "--example", "features.66")
	if code != exitFailure {
		t.Errorf("unknown layer: exit %d, want %d", code, exitFailure)
	}
	if !strings.Contains(errOut, "close matches: features.6") {
		t.Errorf("unknown layer: stderr %q does not list features.6 as a close match", errOut)
	}
}

func TestExplainMemory(t *testing.T) {
	code, out, errOut := runCLI(t, "explain", "--example", "--input", "32x32", "--batch", "4", "--dtype", "float16", "--channel", "0", "features.6")
	if code != 0 {
		t.Fatalf("explain exit %d: %s", code, errOut)
	}
	// features.6 is a 3x3 conv from 16 to 32 channels with stride 2 and
	// padding 1 stored in the file: |X| = 4·16·32·32, |Y| = 4·32·16·16,
	// |W| = 32·16·9, 2 bytes each.
	x, y, w := 4*16*32*32, 4*32*16*16, 32*16*9
	for _, want := range []string{
		"stored in the checkpoint",
		"Eval   keeps |X| + |Y|: " + strconv.Itoa(2*(x+y)) + " bytes",
		"Tune   keeps |X| + |W|: " + strconv.Itoa(2*(x+w)) + " bytes",
		"Deploy keeps |X|:       " + strconv.Itoa(2*x) + " bytes",
		"(" + strconv.Itoa(2*(y-w)) + " bytes)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("memory section lacks %q:\n%s", want, out)
		}
	}
}

func TestExplainUsageErrors(t *testing.T) {
	cases := [][]string{
		{"explain", "--example"},
		{"explain", "model.pt"},
		{"explain", "--example", "--input", "32", "features.6"},
		{"explain", "--example", "--input", "32x32", "--dtype", "int8", "features.6"},
		{"explain", "--example", "--input", "32x32", "--stride", "0", "features.6"},
		{"explain", "--example", "--stride", "2", "features.6"},
		{"explain", "--example", "--channel", "-1", "features.6"},
	}
	for _, args := range cases {
		if code, _, _ := runCLI(t, args...); code != exitUsage {
			t.Errorf("%s: exit %d, want %d", strings.Join(args, " "), code, exitUsage)
		}
	}
}
