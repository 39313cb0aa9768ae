package reports

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/convbn-diag/convbn-diag/analysis"
)

func TestTerminalWidth(t *testing.T) {
	var b bytes.Buffer
	if err := WriteTerminal(&b, []*analysis.FileReport{fixtureReport(t, false)}, Options{Legend: true}); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for i, line := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		if n := utf8.RuneCountInString(line); n > DefaultWidth {
			t.Errorf("line %d is %d characters, want at most %d: %q", i+1, n, DefaultWidth, line)
		}
	}
	if !strings.Contains(out, "...") || !strings.Contains(out, "very_long_name.conv") {
		t.Errorf("long layer name not shortened from the left:\n%s", out)
	}
	for _, want := range []string{"conv1", "layer2.conv", "Summary: 3 layers, 8 channels, 1 dead", "unpaired conv fc", "ambiguous head.bn", "Columns:"} {
		if !strings.Contains(out, want) {
			t.Errorf("terminal output lacks %q:\n%s", want, out)
		}
	}
}

func TestTerminalNarrowWidth(t *testing.T) {
	var b bytes.Buffer
	if err := WriteTerminal(&b, []*analysis.FileReport{fixtureReport(t, false)}, Options{Width: 100}); err != nil {
		t.Fatal(err)
	}
	for i, line := range strings.Split(strings.TrimRight(b.String(), "\n"), "\n") {
		if n := utf8.RuneCountInString(line); n > 100 {
			t.Errorf("line %d is %d characters, want at most 100: %q", i+1, n, line)
		}
	}
}

func TestTableRowsInNetworkOrder(t *testing.T) {
	r := fixtureReport(t, false)
	tab := NewLayerTable(r.Models[0], r.Options.Optimizer)
	if len(tab.Rows) != 3 {
		t.Fatalf("row count mismatch: got %d, want 3", len(tab.Rows))
	}
	// conv1: ω ≈ 1, 0.5, 2, so D_SGD max ≈ 4 (low overshoot).
	row := tab.Rows[0]
	if row[0] != "conv1" || row[1] != "3" || row[6] != "4" || row[12] != "low over" {
		t.Errorf("conv1 row mismatch: got %q", row)
	}
	if got := tab.Rows[2][0]; got != "layer2.conv" {
		t.Errorf("third row layer mismatch: got %q, want layer2.conv", got)
	}
}

func TestFormatCompact(t *testing.T) {
	cases := map[float64]string{
		0: "0", 1: "1", 0.5: "0.5", 1e-5: "1e-5", 123456: "1.23e5", -0.000123: "-0.000123",
		-0.0000123: "-1.23e-5", 0.00123: "0.00123", 9999: "1e4", 1234: "1.23e3", 12.5: "12.5",
		1.5e300: "1.5e300", math.Inf(1): "inf", math.Inf(-1): "-inf", math.NaN(): "nan",
	}
	for x, want := range cases {
		if got := FormatCompact(x); got != want {
			t.Errorf("FormatCompact(%v) mismatch: got %q, want %q", x, got, want)
		}
	}
}

func TestJSONRoundTrip(t *testing.T) {
	var first bytes.Buffer
	files := []*analysis.FileReport{fixtureReport(t, true)}
	if err := WriteJSON(&first, files, Options{ToolVersion: "v0.1.0", PerChannel: true}); err != nil {
		t.Fatal(err)
	}
	var doc Document
	if err := json.Unmarshal(first.Bytes(), &doc); err != nil {
		t.Fatalf("document does not decode: %v", err)
	}
	var second bytes.Buffer
	enc := json.NewEncoder(&second)
	enc.SetIndent("", "  ")
	if err := enc.Encode(&doc); err != nil {
		t.Fatal(err)
	}
	if first.String() != second.String() {
		t.Errorf("round trip changed the document:\nfirst:\n%s\nsecond:\n%s", first.String(), second.String())
	}
	if doc.SchemaVersion != SchemaVersion || doc.Tool.Version != "v0.1.0" {
		t.Errorf("header mismatch: got schema %d, version %q", doc.SchemaVersion, doc.Tool.Version)
	}
	if got := len(doc.Files[0].Models[0].Layers[0].Channels); got != 3 {
		t.Errorf("channel count mismatch: got %d, want 3", got)
	}
}

// decodeGeneric decodes JSON into maps, so nulls and absent fields show.
func decodeGeneric(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("invalid JSON: %v", err)
	}
	return v
}

func TestJSONNonFinite(t *testing.T) {
	var b bytes.Buffer
	if err := WriteJSON(&b, []*analysis.FileReport{fixtureReport(t, true)}, Options{PerChannel: true}); err != nil {
		t.Fatal(err)
	}
	doc := decodeGeneric(t, b.Bytes())
	model := doc["files"].([]any)[0].(map[string]any)["models"].([]any)[0].(map[string]any)
	layers := model["layers"].([]any)
	channels := layers[2].(map[string]any)["channels"].([]any)

	cases := []struct {
		channel int
		field   string
		flag    string
	}{
		{0, "distortion_sgd", "dead"},
		{0, "distortion_adam", "dead"},
		{1, "omega", "no-omega"},
		{1, "inv_std", "no-omega"},
		{2, "gamma", "non-finite-input"},
		{2, "omega", "non-finite-input"},
	}
	for _, tc := range cases {
		ch := channels[tc.channel].(map[string]any)
		v, present := ch[tc.field]
		if !present || v != nil {
			t.Errorf("channel %d %s mismatch: got %v (present %v), want null", tc.channel, tc.field, v, present)
		}
		flags := ch["flags"].([]any)
		if !containsAny(flags, tc.flag) {
			t.Errorf("channel %d flags mismatch: got %v, want %s among them", tc.channel, flags, tc.flag)
		}
	}

	layerFlags := layers[2].(map[string]any)["flags"].([]any)
	for _, f := range []string{"dead", "no-omega", "negative-running-var", "non-finite-input"} {
		if !containsAny(layerFlags, f) {
			t.Errorf("layer flags mismatch: got %v, want %s among them", layerFlags, f)
		}
	}

	// The second layer's conv has no bias: conv_bias is null and no flag
	// is needed; weight norms were computed, so they are present.
	ch := layers[1].(map[string]any)["channels"].([]any)[0].(map[string]any)
	if v, present := ch["conv_bias"]; !present || v != nil {
		t.Errorf("conv_bias without a bias mismatch: got %v (present %v), want null", v, present)
	}
	for _, field := range []string{"omega", "inv_std", "distortion_sgd", "distortion_adam", "weight_norm", "fused_weight_norm", "fused_bias"} {
		if _, ok := ch[field].(float64); !ok {
			t.Errorf("field %s missing or not a number: %v", field, ch[field])
		}
	}
}

func TestJSONWithoutWeightNorms(t *testing.T) {
	var b bytes.Buffer
	if err := WriteJSON(&b, []*analysis.FileReport{fixtureReport(t, false)}, Options{PerChannel: true}); err != nil {
		t.Fatal(err)
	}
	doc := decodeGeneric(t, b.Bytes())
	ch := doc["files"].([]any)[0].(map[string]any)["models"].([]any)[0].(map[string]any)["layers"].([]any)[0].(map[string]any)["channels"].([]any)[0].(map[string]any)
	if _, present := ch["weight_norm"]; present {
		t.Error("weight_norm present although weight norms were not computed")
	}

	b.Reset()
	if err := WriteJSON(&b, []*analysis.FileReport{fixtureReport(t, false)}, Options{}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), `"channels": [`) {
		t.Error("per-channel arrays written without PerChannel")
	}
}

func containsAny(list []any, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func TestCSVChannelHeader(t *testing.T) {
	var b bytes.Buffer
	if err := WriteCSV(&b, []*analysis.FileReport{fixtureReport(t, true)}, Options{PerChannel: true}); err != nil {
		t.Fatal(err)
	}
	header, _, _ := strings.Cut(b.String(), "\n")
	want := "file,model,layer,conv,bn,channel,gamma,beta,running_mean,running_var,eps,inv_std,omega,conv_bias,distortion_sgd,distortion_adam,weight_norm,fused_weight_norm,fused_bias,flags"
	if header != want {
		t.Errorf("header mismatch:\ngot  %s\nwant %s", header, want)
	}
}

func readCSV(t *testing.T, b []byte) []map[string]string {
	t.Helper()
	records, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	if err != nil {
		t.Fatalf("invalid CSV: %v", err)
	}
	var rows []map[string]string
	for _, rec := range records[1:] {
		row := map[string]string{}
		for i, name := range records[0] {
			row[name] = rec[i]
		}
		rows = append(rows, row)
	}
	return rows
}

func TestCSVChannelValues(t *testing.T) {
	var b bytes.Buffer
	if err := WriteCSV(&b, []*analysis.FileReport{fixtureReport(t, true)}, Options{PerChannel: true}); err != nil {
		t.Fatal(err)
	}
	rows := readCSV(t, b.Bytes())
	if len(rows) != 8 {
		t.Fatalf("row count mismatch: got %d, want 8", len(rows))
	}

	// conv1 channel 1: γ = 0.5, σ² = 1, weight row of two ones.
	r := rows[1]
	omega := 0.5 / math.Sqrt(1+1e-5)
	want := map[string]float64{
		"omega":             omega,
		"inv_std":           1 / math.Sqrt(1+1e-5),
		"distortion_sgd":    1 / (omega * omega),
		"distortion_adam":   1 / omega,
		"weight_norm":       math.Sqrt(2),
		"fused_weight_norm": math.Sqrt(omega*omega + omega*omega),
		"fused_bias":        0.5 + omega*(0.25-0.1),
		"conv_bias":         0.25,
	}
	for col, w := range want {
		got, err := strconv.ParseFloat(r[col], 64)
		if err != nil || math.Abs(got-w) > 1e-12*math.Abs(w) {
			t.Errorf("%s mismatch: got %q, want %v", col, r[col], w)
		}
	}
	if r["file"] != "/tmp/model.pth" || r["model"] != "state_dict" || r["layer"] != "0" || r["conv"] != "conv1" || r["bn"] != "bn1" || r["channel"] != "1" {
		t.Errorf("identity columns mismatch: got %v", r)
	}

	if got := rows[3]["conv_bias"]; got != "" {
		t.Errorf("conv_bias without a bias mismatch: got %q, want empty", got)
	}
	nonFinite := []struct {
		row         int
		column, val string
		flag        string
	}{
		{5, "distortion_sgd", "inf", "dead"},
		{5, "distortion_adam", "inf", "dead"},
		{6, "omega", "nan", "no-omega"},
		{7, "gamma", "nan", "non-finite-input"},
		{7, "fused_bias", "nan", "non-finite-input"},
	}
	for _, tc := range nonFinite {
		r := rows[tc.row]
		if r[tc.column] != tc.val {
			t.Errorf("row %d %s mismatch: got %q, want %q", tc.row, tc.column, r[tc.column], tc.val)
		}
		if !slices.Contains(strings.Split(r["flags"], ";"), tc.flag) {
			t.Errorf("row %d flags mismatch: got %q, want %s among them", tc.row, r["flags"], tc.flag)
		}
	}
}

func TestCSVLayerRows(t *testing.T) {
	var b bytes.Buffer
	if err := WriteCSV(&b, []*analysis.FileReport{fixtureReport(t, false)}, Options{}); err != nil {
		t.Fatal(err)
	}
	rows := readCSV(t, b.Bytes())
	if len(rows) != 3 {
		t.Fatalf("row count mismatch: got %d, want 3", len(rows))
	}
	if len(rows[0]) != len(LayerCSVHeader) {
		t.Errorf("column count mismatch: got %d, want %d", len(rows[0]), len(LayerCSVHeader))
	}
	if rows[0]["risk"] != "low" || rows[0]["risk_side"] != "overshoot" || rows[2]["dead"] != "1" {
		t.Errorf("layer rows mismatch: got %v and %v", rows[0], rows[2])
	}
}

func TestMarkdownTable(t *testing.T) {
	var b bytes.Buffer
	if err := WriteMarkdown(&b, []*analysis.FileReport{fixtureReport(t, false)}, Options{}); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"| layer | C | eps | med\\|ω\\| |",
		"|---|---:|---:|",
		"| conv1 | 3 |",
		"Summary: 3 layers, 8 channels, 1 dead",
		"- unpaired conv `fc`",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("markdown lacks %q:\n%s", want, out)
		}
	}
}

func TestParseFormat(t *testing.T) {
	for _, f := range Formats {
		if got, err := ParseFormat(string(f)); err != nil || got != f {
			t.Errorf("ParseFormat(%q) mismatch: got %q, %v", f, got, err)
		}
	}
	if _, err := ParseFormat("yaml"); err == nil {
		t.Error("ParseFormat accepted yaml")
	}
}

func TestRenderersWithoutPairs(t *testing.T) {
	report := &analysis.FileReport{
		Path:    "ecg.pth",
		Format:  "pytorch-zip",
		Options: analysis.DefaultOptions(),
		Models: []*analysis.ModelReport{{
			Summary: analysis.Summarize(nil, analysis.SGD),
		}},
	}
	files := []*analysis.FileReport{report}
	for _, f := range Formats {
		var b bytes.Buffer
		if err := Write(&b, f, files, Options{PerChannel: true}); err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		out := b.String()
		switch f {
		case FormatTable, FormatMarkdown:
			if !strings.Contains(out, "o Conv→BatchNorm pairs found") || !strings.Contains(out, "Summary: 0 layers, 0 channels") {
				t.Errorf("%s output lacks the no-pairs message or summary:\n%s", f, out)
			}
		case FormatJSON:
			doc := decodeGeneric(t, b.Bytes())
			model := doc["files"].([]any)[0].(map[string]any)["models"].([]any)[0].(map[string]any)
			if layers := model["layers"].([]any); len(layers) != 0 {
				t.Errorf("json layers mismatch: got %d, want 0", len(layers))
			}
			extreme := model["summary"].(map[string]any)["max_distortion"].(map[string]any)
			if extreme["value"] != nil || extreme["layer"] != "" {
				t.Errorf("json max_distortion mismatch: got %v, want null value and empty layer", extreme)
			}
		case FormatCSV:
			if strings.Count(out, "\n") != 1 {
				t.Errorf("csv without pairs mismatch: got %q, want the header only", out)
			}
		}
	}
}

func TestFailuresListed(t *testing.T) {
	opts := Options{Failures: []Failure{{File: "broken.pt", Error: "broken.pt: file is empty"}}}
	for _, f := range []Format{FormatTable, FormatJSON, FormatMarkdown} {
		var b strings.Builder
		if err := Write(&b, f, nil, opts); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if !strings.Contains(b.String(), "broken.pt: file is empty") {
			t.Errorf("%s output does not list the failure:\n%s", f, b.String())
		}
	}

	var b strings.Builder
	if err := WriteJSON(&b, nil, opts); err != nil {
		t.Fatal(err)
	}
	var doc Document
	if err := json.Unmarshal([]byte(b.String()), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Failures) != 1 || doc.Failures[0].File != "broken.pt" {
		t.Errorf("JSON failures: got %+v, want one entry for broken.pt", doc.Failures)
	}
}

func TestDisplayTextEscapesControls(t *testing.T) {
	cases := map[string]string{
		"layer1.0.conv1":     "layer1.0.conv1",
		"conv\x1b[31mred":    `conv\x1b[31mred`,
		"a\nfake | row":      `a\nfake | row`,
		"ω.γ":                "ω.γ",
		"tab\there":          `tab\there`,
		string([]byte{0xff}): `\xff`,
	}
	for in, want := range cases {
		if got := displayText(in); got != want {
			t.Errorf("displayText(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCSVTextGuardsFormulas(t *testing.T) {
	cases := map[string]string{
		"=cmd|calc.0": "'=cmd|calc.0",
		"+1":          "'+1",
		"-2":          "'-2",
		"@SUM(A1)":    "'@SUM(A1)",
		"features.0":  "features.0",
		"":            "",
	}
	for in, want := range cases {
		if got := csvText(in); got != want {
			t.Errorf("csvText(%q) = %q, want %q", in, got, want)
		}
	}
}
