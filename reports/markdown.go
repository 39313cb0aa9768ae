package reports

import (
	"fmt"
	"io"
	"strings"

	"github.com/convbn-diag/convbn-diag/analysis"
)

// WriteMarkdown renders the layer tables as GitHub-flavored Markdown: a
// heading per file and model, the table, the summary, the leftovers of pair
// discovery and the column legend.
func WriteMarkdown(w io.Writer, files []*analysis.FileReport, opts Options) error {
	ew := &errWriter{w: w}
	opt := analysis.SGD
	for _, f := range files {
		opt = f.Options.Optimizer
		ew.println(fmt.Sprintf("## %s (%s)", markdownText(f.Path), f.Format))
		ew.println("")
		for _, warning := range f.Warnings {
			ew.println("- warning: " + markdownText(warning))
		}
		if len(f.Warnings) > 0 {
			ew.println("")
		}
		for _, m := range f.Models {
			writeMarkdownModel(ew, m, opt, opts.PerChannel)
		}
	}
	for _, f := range opts.Failures {
		ew.println(fmt.Sprintf("**Not analyzed:** %s: %s", markdownText(f.File), markdownText(f.Error)))
		ew.println("")
	}
	ew.println("Columns:")
	ew.println("")
	cols := layerColumns(opt)
	if opts.PerChannel {
		cols = channelColumns()
	}
	for _, c := range cols {
		ew.println(fmt.Sprintf("- **%s**: %s", markdownText(c.Header), markdownText(c.Legend)))
	}
	return ew.err
}

func writeMarkdownModel(ew *errWriter, m *analysis.ModelReport, opt analysis.Optimizer, perChannel bool) {
	heading := "### model "
	if m.Key != "" {
		heading += "`" + displayText(m.Key) + "`"
	} else {
		heading += "(top level)"
	}
	if m.StrippedPrefix != "" {
		heading += fmt.Sprintf(", prefix `%s` removed", m.StrippedPrefix)
	}
	ew.println(heading)
	ew.println("")

	if len(m.Layers) == 0 {
		ew.println("No Conv→BatchNorm pairs found.")
	} else if perChannel {
		NewChannelTable(m).writeMarkdown(ew)
	} else {
		NewLayerTable(m, opt).writeMarkdown(ew)
	}
	ew.println("")
	ew.println(markdownText(strings.Join(SummaryLines(m.Summary), " ")))
	ew.println("")

	var items []string
	for _, u := range m.Unpaired {
		items = append(items, fmt.Sprintf("unpaired %s `%s`: %s", u.Kind, displayText(u.Name), markdownText(u.Reason)))
	}
	for _, a := range m.Ambiguous {
		items = append(items, fmt.Sprintf("ambiguous `%s` (candidates %s): %s", displayText(a.Name), markdownText(strings.Join(a.Candidates, ", ")), markdownText(a.Reason)))
	}
	for _, n := range m.Notes {
		items = append(items, "note: "+markdownText(n))
	}
	for _, l := range m.Layers {
		if line := FlaggedChannels(l); line != "" {
			items = append(items, fmt.Sprintf("flags on `%s`: %s", displayText(l.Conv), markdownText(line)))
		}
	}
	for _, l := range m.Layers {
		for _, n := range l.Notes {
			items = append(items, fmt.Sprintf("note on `%s`: %s", displayText(l.Conv), markdownText(n)))
		}
	}

	for _, it := range items {
		ew.println("- " + it)
	}
	if len(items) > 0 {
		ew.println("")
	}
}

func (t *Table) writeMarkdown(ew *errWriter) {
	cells := make([]string, len(t.Columns))
	rule := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		cells[i] = markdownText(c.Header)
		rule[i] = "---"
		if c.Align == AlignRight {
			rule[i] = "---:"
		}
	}
	ew.println("| " + strings.Join(cells, " | ") + " |")
	ew.println("|" + strings.Join(rule, "|") + "|")
	for _, row := range t.Rows {
		for i, cell := range row {
			cells[i] = markdownText(cell)
		}
		ew.println("| " + strings.Join(cells, " | ") + " |")
	}
}

// markdownText escapes characters that Markdown would read as emphasis,
// markup or, for the pipe, the end of a table cell.
func markdownText(s string) string {
	r := strings.NewReplacer(`\`, `\\`, "*", `\*`, "_", `\_`, "`", "\\`", "<", "&lt;", "|", `\|`)
	return r.Replace(displayText(s))
}
