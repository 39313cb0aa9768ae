package checkpoint

import (
	"os"
	"os/exec"
	"sort"
	"strings"
	"testing"
)

// realFile is what MANIFEST-level facts say about one real checkpoint.
type realFile struct {
	name   string
	format Format
	key    string         // Model.Key of the single model
	prefix string         // Model.StrippedPrefix
	dtypes map[string]int // tensor count per dtype
	module bool           // whether Model.Root is set
	// compare lists tensors (names after prefix stripping) whose values
	// are checked against torch.
	compare []string
	// shapes are a few expected shapes.
	shapes map[string][]int
}

var realFiles = []realFile{
	{
		name: "akamaster_resnet20-12fca82f.th", format: FormatTorchLegacy, key: "state_dict", prefix: "module.",
		dtypes:  map[string]int{"float32": 97},
		compare: []string{"conv1.weight", "layer2.1.bn2.running_var", "linear.bias"},
		shapes:  map[string][]int{"conv1.weight": {16, 3, 3, 3}, "linear.weight": {10, 64}},
	},
	{
		name: "ultralytics_yolov5n.pt", format: FormatTorchZip, key: "model", module: true,
		dtypes:  map[string]int{"float16": 299, "int64": 57, "float32": 1, "float64": 1},
		compare: []string{"model.0.conv.weight", "model.8.m.0.cv2.bn.running_var", "model.24.m.2.bias", "model.24.anchors", "model.0.bn.num_batches_tracked"},
		shapes:  map[string][]int{"model.0.conv.weight": {16, 3, 6, 6}, "stride": {3}, "class_weights": {80}},
	},
	{
		name: "ecg1d_conv_relu_bn.pth", format: FormatTorchZip, key: "",
		dtypes:  map[string]int{"float32": 20, "int64": 3},
		compare: []string{"net.0.weight", "net.5.running_mean", "net.12.bias", "net.8.num_batches_tracked"},
		shapes:  map[string][]int{"net.0.weight": {64, 1, 7}, "net.3.weight": {128, 64, 5}, "net.6.weight": {256, 128, 3}},
	},
	{
		name: "dcgan_mnist_generator_convT.pth", format: FormatTorchZip, key: "",
		dtypes:  map[string]int{"float32": 20, "int64": 3},
		compare: []string{"gen.0.0.weight", "gen.1.1.running_var", "gen.3.0.bias"},
		shapes:  map[string][]int{"gen.0.0.weight": {64, 256, 3, 3}, "gen.3.0.weight": {64, 1, 4, 4}},
	},
	{
		name: "ulfd_version-RFB-320.pth", format: FormatTorchLegacy, key: "",
		dtypes:  map[string]int{"float32": 209, "int64": 35},
		compare: []string{"base_net.0.0.weight", "base_net.7.branch1.1.bn.running_mean", "regression_headers.3.bias"},
		shapes:  map[string][]int{"base_net.1.0.weight": {16, 1, 3, 3}},
	},
	{
		name: "kuangliu_style_ckpt_convbias.pth", format: FormatTorchZip, key: "net", prefix: "module.",
		dtypes:  map[string]int{"float32": 32, "int64": 5},
		compare: []string{"ConvPart.0.weight", "ConvPart.0.bias", "ConvPart.15.running_var"},
		shapes:  map[string][]int{"ConvPart.0.weight": {16, 3, 3, 3}},
	},
	{
		name: "linear_bn1d_tabular_densenet.pth", format: FormatTorchZip, key: "",
		dtypes:  map[string]int{"float32": 56, "int64": 8},
		compare: []string{"input_layer.weight", "dense_block2.layers.3.1.running_var"},
		shapes:  map[string][]int{"input_layer.weight": {32, 50}},
	},
}

func TestOpenRealCheckpoints(t *testing.T) {
	for _, rf := range realFiles {
		t.Run(rf.name, func(t *testing.T) {
			path := realCheckpoint(t, rf.name)
			f, err := Open(path)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer f.Close()

			if f.Format != rf.format {
				t.Errorf("format mismatch: got %s, want %s", f.Format, rf.format)
			}
			if len(f.Models) != 1 {
				t.Fatalf("model count mismatch: got %d, want 1", len(f.Models))
			}
			m := f.Models[0]
			if m.Key != rf.key {
				t.Errorf("model key mismatch: got %q, want %q", m.Key, rf.key)
			}
			if m.StrippedPrefix != rf.prefix {
				t.Errorf("stripped prefix mismatch: got %q, want %q", m.StrippedPrefix, rf.prefix)
			}
			if (m.Root != nil) != rf.module {
				t.Errorf("module tree present = %v, want %v", m.Root != nil, rf.module)
			}

			got := map[string]int{}
			names := map[string]bool{}
			for _, tn := range m.Tensors {
				got[tn.DType.String()]++
				if names[tn.Name] {
					t.Errorf("duplicate tensor name %s", tn.Name)
				}
				names[tn.Name] = true
				if strings.HasPrefix(tn.Name, "module.") {
					t.Errorf("tensor %s still has the DataParallel prefix", tn.Name)
				}
			}
			for dt, n := range rf.dtypes {
				if got[dt] != n {
					t.Errorf("%s tensor count mismatch: got %d, want %d", dt, got[dt], n)
				}
			}
			if len(got) != len(rf.dtypes) {
				t.Errorf("dtypes mismatch: got %v, want %v", got, rf.dtypes)
			}
			for name, shape := range rf.shapes {
				tn := tensorByName(m, name)
				if tn == nil {
					t.Errorf("tensor %s not found", name)
					continue
				}
				if !sameShape(tn.Shape, shape) {
					t.Errorf("%s shape mismatch: got %v, want %v", name, tn.Shape, shape)
				}
			}
			if len(f.Warnings) != 0 {
				t.Errorf("unexpected warnings: %q", f.Warnings)
			}
		})
	}
}

func TestRealCheckpointValuesMatchTorch(t *testing.T) {
	for _, rf := range realFiles {
		t.Run(rf.name, func(t *testing.T) {
			path := realCheckpoint(t, rf.name)
			f, err := Open(path)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer f.Close()
			m := f.Models[0]

			torchNames := make([]string, len(rf.compare))
			for i, n := range rf.compare {
				torchNames[i] = m.StrippedPrefix + n
			}
			want := torchValues(t, path, m.Key, torchNames...)
			for i, n := range rf.compare {
				tn := tensorByName(m, n)
				if tn == nil {
					t.Errorf("tensor %s not found", n)
					continue
				}
				compareTensor(t, tn, want[torchNames[i]])
			}
		})
	}
}

func TestYOLOv5ModuleTree(t *testing.T) {
	f, err := Open(realCheckpoint(t, "ultralytics_yolov5n.pt"))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer f.Close()
	root := f.Models[0].Root
	if root.Class != "models.yolo.Model" {
		t.Errorf("root class mismatch: got %s, want models.yolo.Model", root.Class)
	}

	var bns, convs []*Module
	byName := map[string]*Module{}
	var walk func(m *Module)
	walk = func(m *Module) {
		byName[m.Name] = m
		switch m.Class {
		case "torch.nn.modules.batchnorm.BatchNorm2d":
			bns = append(bns, m)
		case "torch.nn.modules.conv.Conv2d":
			convs = append(convs, m)
		}
		for _, c := range m.Children {
			walk(c)
		}
	}
	walk(root)

	if len(bns) != 57 {
		t.Errorf("BatchNorm2d count mismatch: got %d, want 57", len(bns))
	}
	if len(convs) != 60 {
		t.Errorf("Conv2d count mismatch: got %d, want 60", len(convs))
	}
	for _, bn := range bns {
		if bn.Attrs["eps"] != 0.001 {
			t.Errorf("%s eps mismatch: got %v, want 0.001", bn.Name, bn.Attrs["eps"])
		}
		if bn.Attrs["momentum"] != 0.03 {
			t.Errorf("%s momentum mismatch: got %v, want 0.03", bn.Name, bn.Attrs["momentum"])
		}
		if bn.Attrs["affine"] != true || bn.Attrs["track_running_stats"] != true {
			t.Errorf("%s affine/track_running_stats mismatch: got %v/%v", bn.Name, bn.Attrs["affine"], bn.Attrs["track_running_stats"])
		}
	}

	stem := byName["model.0.conv"]
	if stem == nil {
		t.Fatal("module model.0.conv not found")
	}
	wantAttrs := map[string]any{
		"stride":       []any{int64(2), int64(2)},
		"padding":      []any{int64(2), int64(2)},
		"kernel_size":  []any{int64(6), int64(6)},
		"dilation":     []any{int64(1), int64(1)},
		"groups":       int64(1),
		"transposed":   false,
		"in_channels":  int64(3),
		"out_channels": int64(16),
	}
	for k, want := range wantAttrs {
		if !attrEqual(stem.Attrs[k], want) {
			t.Errorf("model.0.conv %s mismatch: got %v, want %v", k, stem.Attrs[k], want)
		}
	}
	wantParams := []Param{{"weight", "model.0.conv.weight"}, {"bias", ""}}
	if len(stem.Params) != 2 || stem.Params[0] != wantParams[0] || stem.Params[1] != wantParams[1] {
		t.Errorf("model.0.conv params mismatch: got %v, want %v", stem.Params, wantParams)
	}
	bn0 := byName["model.0.bn"]
	if bn0 == nil || len(bn0.Params) != 5 || bn0.Params[4].Short != "num_batches_tracked" {
		t.Errorf("model.0.bn params mismatch: got %+v", bn0)
	}

	// The Detect convs have a bias and no BatchNorm.
	det := byName["model.24.m.0"]
	if det == nil || len(det.Params) != 2 || det.Params[1].Full != "model.24.m.0.bias" {
		t.Errorf("model.24.m.0 params mismatch: got %+v", det)
	}

	// Children keep registration order.
	seq := byName["model"]
	if seq == nil || len(seq.Children) != 25 || seq.Children[0].Name != "model.0" || seq.Children[24].Name != "model.24" {
		t.Errorf("model children mismatch")
	}

	if !sort.StringsAreSorted(f.Globals) {
		t.Errorf("Globals are not sorted: %v", f.Globals)
	}
	for i := 1; i < len(f.Globals); i++ {
		if f.Globals[i] == f.Globals[i-1] {
			t.Errorf("Globals list %s twice", f.Globals[i])
		}
	}
	if want := pythonGlobals(t, f.Path); strings.Join(f.Globals, " ") != strings.Join(want, " ") {
		t.Errorf("Globals mismatch:\ngot  %v\nwant %v", f.Globals, want)
	}

	kinds := map[string]GlobalKind{}
	for _, g := range f.Globals {
		kinds[g] = ClassifyGlobal(g)
	}
	if kinds["models.yolo.Model"] != GlobalModuleClass {
		t.Errorf("models.yolo.Model kind mismatch: got %v", kinds["models.yolo.Model"])
	}
	if kinds["torch._utils._rebuild_tensor_v2"] != GlobalTensorData {
		t.Errorf("_rebuild_tensor_v2 kind mismatch: got %v", kinds["torch._utils._rebuild_tensor_v2"])
	}
}

func attrEqual(got, want any) bool {
	gl, ok1 := got.([]any)
	wl, ok2 := want.([]any)
	if ok1 != ok2 {
		return false
	}
	if !ok1 {
		return got == want
	}
	if len(gl) != len(wl) {
		return false
	}
	for i := range gl {
		if gl[i] != wl[i] {
			return false
		}
	}
	return true
}

func TestOpenOtherFormats(t *testing.T) {
	cases := []struct {
		name    string
		format  Format
		tensors int
	}{
		{"silero_vad_micro.jit", FormatTorchScript, 56},
		{"tinygrad_mnist_conv_relu_bn.safetensors", FormatSafetensors, 20},
		{"ulfd_version-RFB-320.onnx", FormatONNX, 244},
		{"ulfd_version-RFB-320_simplified.onnx", FormatONNX, 112},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := realCheckpoint(t, c.name)
			f, err := Open(path)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer f.Close()
			if f.Format != c.format {
				t.Errorf("format mismatch: got %s, want %s", f.Format, c.format)
			}
			if len(f.Models) != 1 {
				t.Fatalf("model count mismatch: got %d, want 1", len(f.Models))
			}
			if n := len(f.Models[0].Tensors); n != c.tensors {
				t.Errorf("tensor count mismatch: got %d, want %d", n, c.tensors)
			}
		})
	}
}

// pythonGlobals lists the GLOBAL opcodes of a zip checkpoint's data.pkl
// as Python's pickletools decodes them, sorted and unique.
func pythonGlobals(t *testing.T, path string) []string {
	t.Helper()
	const script = `
import pickletools, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
data = z.read([n for n in z.namelist() if n.endswith("/data.pkl")][0])
names = set()
for op, arg, pos in pickletools.genops(data):
    if op.name == "GLOBAL":
        names.add(arg.replace(" ", "."))
    elif op.name == "STACK_GLOBAL":
        raise SystemExit("STACK_GLOBAL is not handled by this check")
print(" ".join(sorted(names)))
`
	out, err := exec.Command(torchPython, "-c", script, path).Output()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s failed: %v", torchPython, err)
		}
		t.Skipf("%s failed (%v); skipping the globals comparison", torchPython, err)
	}
	return strings.Fields(string(out))
}
