package main

import (
	"encoding/csv"
	"path/filepath"
	"strings"
	"testing"
)

// TestAnalyzeRealCheckpoints runs analyze through the command line on every
// checkpoint beside the repository and checks the pair count and ε
// of each, as documented by the projects that wrote them.
func TestAnalyzeRealCheckpoints(t *testing.T) {
	dir := sharedCheckpoints(t)
	cases := []struct {
		file   string
		pairs  int
		eps    float64
		prefix bool // names carry a DataParallel "module." prefix
	}{
		{"akamaster_resnet20-12fca82f.th", 19, 1e-5, true},
		{"ultralytics_yolov5n.pt", 57, 1e-3, false},
		{"ecg1d_conv_relu_bn.pth", 0, 1e-5, false},
		{"dcgan_mnist_generator_convT.pth", 3, 1e-5, false},
		{"ulfd_version-RFB-320.pth", 35, 1e-5, false},
		{"kuangliu_style_ckpt_convbias.pth", 5, 1e-5, true},
		{"linear_bn1d_tabular_densenet.pth", 0, 1e-5, false},
		{"tinygrad_mnist_conv_relu_bn.safetensors", 0, 1e-5, false},
		{"silero_vad_micro.jit", 3, 1e-5, false},
		// ONNX stores ε as float32, so 1e-5 reads back as 9.99999974738e-06.
		{"ulfd_version-RFB-320.onnx", 35, float64(float32(1e-5)), false},
		{"ulfd_version-RFB-320_simplified.onnx", 0, 1e-5, false},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			path := filepath.Join(dir, c.file)
			code, stdout, stderr := runCLI(t, "analyze", "-f", "json", path)
			if code != exitOK {
				t.Fatalf("exit status %d, stderr %q", code, stderr)
			}
			doc := decodeReport(t, stdout)
			if len(doc.Files) != 1 || doc.Files[0].File != path {
				t.Fatalf("report files: got %+v, want one entry for %s", doc.Files, path)
			}
			models := doc.Files[0].Models
			if len(models) != 1 {
				t.Fatalf("got %d models, want 1", len(models))
			}
			layers := models[0].Layers
			if len(layers) != c.pairs {
				t.Errorf("pairs: got %d, want %d", len(layers), c.pairs)
			}
			for _, l := range layers {
				if l.Eps != c.eps {
					t.Errorf("layer %s: eps %g, want %g", l.Conv, l.Eps, c.eps)
				}
				if strings.HasPrefix(l.Conv, "module.") {
					t.Errorf("layer %s still carries the module. prefix", l.Conv)
				}
			}

			// The table fits 120 columns.
			code, stdout, stderr = runCLI(t, "analyze", path)
			if code != exitOK {
				t.Fatalf("table: exit status %d, stderr %q", code, stderr)
			}
			for i, line := range strings.Split(stdout, "\n") {
				if n := len([]rune(line)); n > 120 {
					t.Errorf("table line %d is %d characters wide: %q", i+1, n, line)
				}
			}
			if c.pairs == 0 && strings.HasSuffix(c.file, ".onnx") && !strings.Contains(stdout, "already fused") {
				t.Errorf("table does not say that the graph is already fused")
			}
			if c.prefix && !strings.Contains(stdout, `"module."`) {
				t.Errorf("table does not report the stripped module. prefix")
			}
		})
	}
}

// TestAnalyzePerChannelCSVColumns checks the per-channel CSV's exact header
// and its row count on a real checkpoint.
func TestAnalyzePerChannelCSVColumns(t *testing.T) {
	path := filepath.Join(sharedCheckpoints(t), "akamaster_resnet20-12fca82f.th")
	code, stdout, stderr := runCLI(t, "analyze", "--per-channel", "-f", "csv", path)
	if code != exitOK {
		t.Fatalf("exit status %d, stderr %q", code, stderr)
	}
	rows, err := csv.NewReader(strings.NewReader(stdout)).ReadAll()
	if err != nil {
		t.Fatalf("CSV does not parse: %v", err)
	}
	want := "file,model,layer,conv,bn,channel,gamma,beta,running_mean,running_var,eps,inv_std,omega,conv_bias,distortion_sgd,distortion_adam,weight_norm,fused_weight_norm,fused_bias,flags"
	if got := strings.Join(rows[0], ","); got != want {
		t.Errorf("CSV header mismatch:\ngot  %s\nwant %s", got, want)
	}
	// ResNet-20 has 16 + 6×16 + 6×32 + 6×64 BatchNorm channels.
	if got, want := len(rows)-1, 16+6*16+6*32+6*64; got != want {
		t.Errorf("CSV rows: got %d, want %d", got, want)
	}
}
