package reports

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/convbn-diag/convbn-diag/analysis"
)

// Format names an output format.
type Format string

// Output formats.
const (
	FormatTable    Format = "table"
	FormatJSON     Format = "json"
	FormatCSV      Format = "csv"
	FormatMarkdown Format = "markdown"
)

// Formats lists every output format, the default first.
var Formats = []Format{FormatTable, FormatJSON, FormatCSV, FormatMarkdown}

// ParseFormat returns the Format named by s.
func ParseFormat(s string) (Format, error) {
	for _, f := range Formats {
		if string(f) == s {
			return f, nil
		}
	}
	names := make([]string, len(Formats))
	for i, f := range Formats {
		names[i] = string(f)
	}
	return "", fmt.Errorf("invalid format %q: use one of %s", s, strings.Join(names, ", "))
}

// Options control every renderer.
type Options struct {
	// ToolVersion is written into JSON documents.
	ToolVersion string
	// PerChannel adds per-channel arrays to JSON and switches CSV to one
	// row per channel. Weight norms appear only when the analysis computed
	// them (analysis.Options.WeightNorms).
	PerChannel bool
	// Width is the terminal table's maximum line width in characters;
	// 0 means DefaultWidth.
	Width int
	// Legend adds the column legend under the terminal table.
	Legend bool
	// Failures are the input files that could not be analyzed. JSON lists
	// them under "failures" and the table and Markdown formats name them at
	// the end, so a report never looks complete when a file is missing
	// from it. CSV has no place for them, so only the exit status reports them.
	Failures []Failure
}

// Failure is an input file that could not be analyzed, with the reason.
type Failure struct {
	File  string `json:"file"`
	Error string `json:"error"`
}

// DefaultWidth is the terminal table's default maximum line width.
const DefaultWidth = 120

// Write renders files in format f to w.
func Write(w io.Writer, f Format, files []*analysis.FileReport, opts Options) error {
	switch f {
	case FormatTable:
		return WriteTerminal(w, files, opts)
	case FormatJSON:
		return WriteJSON(w, files, opts)
	case FormatCSV:
		return WriteCSV(w, files, opts)
	case FormatMarkdown:
		return WriteMarkdown(w, files, opts)
	}
	return fmt.Errorf("invalid format %q", f)
}

// FormatCompact formats x with at most three significant digits in at
// most eight characters ("0.0123", "4.56e7", "-1.2e-9"), for tables. It writes "inf",
// "-inf" and "nan" for numbers that are not finite.
func FormatCompact(x float64) string {
	switch {
	case math.IsNaN(x):
		return "nan"
	case math.IsInf(x, 1):
		return "inf"
	case math.IsInf(x, -1):
		return "-inf"
	case x == 0:
		return "0"
	}
	s := strconv.FormatFloat(x, 'g', 3, 64)
	mantissa, exponent, found := strings.Cut(s, "e")
	if !found {
		return s
	}
	sign := ""
	if exponent[0] == '-' {
		sign = "-"
	}
	return mantissa + "e" + sign + strings.TrimLeft(exponent[1:], "0")
}

// formatExact formats x in the shortest form that reads back to the same
// float64, with "inf", "-inf" and "nan" for numbers that are not finite.
func formatExact(x float64) string {
	switch {
	case math.IsNaN(x):
		return "nan"
	case math.IsInf(x, 1):
		return "inf"
	case math.IsInf(x, -1):
		return "-inf"
	}
	return strconv.FormatFloat(x, 'g', -1, 64)
}

// formatShape writes a shape as "64x3x3x3".
func formatShape(shape []int) string {
	parts := make([]string, len(shape))
	for i, d := range shape {
		parts[i] = strconv.Itoa(d)
	}
	return strings.Join(parts, "x")
}

// riskLabel is the short risk text of the table: "none", or the level and
// the side, such as "high over", "med stall" or "low both".
func riskLabel(r analysis.Risk) string {
	if r.Level.Rank() == 0 {
		return "none"
	}
	level := string(r.Level)
	if r.Level == analysis.LevelMedium {
		level = "med"
	}
	side := string(r.Side)
	if r.Side == analysis.SideOvershoot {
		side = "over"
	}
	return level + " " + side
}

// displayText makes a name taken from a file safe to print in a terminal
// or a Markdown table: control characters (escape sequences, newlines,
// tabs) are written as Go escapes such as \x1b or \n, so a crafted tensor
// name cannot move the cursor, recolor the terminal or add table rows.
func displayText(s string) string {
	clean := true
	for _, r := range s {
		if unicode.IsControl(r) || r == utf8.RuneError {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	q := strconv.Quote(s)
	return q[1 : len(q)-1]
}
