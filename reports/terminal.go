package reports

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/convbn-diag/convbn-diag/analysis"
)

// minShrinkWidth is the narrowest a shrinkable column gets.
const minShrinkWidth = 12

// WriteText renders t as aligned plain text, two spaces between columns,
// in lines of at most width characters when the shrinkable columns can
// be shortened enough (down to 12 characters each).
func (t *Table) WriteText(w io.Writer, width int) error {
	widths := t.widths()
	total := 2 * (len(widths) - 1)
	for _, cw := range widths {
		total += cw
	}
	for i, c := range t.Columns {
		if total <= width {
			break
		}
		if !c.Shrink || widths[i] <= minShrinkWidth {
			continue
		}
		cut := min(total-width, widths[i]-minShrinkWidth)
		widths[i] -= cut
		total -= cut
	}

	line := func(cells []string) error {
		parts := make([]string, len(cells))
		for i, cell := range cells {
			if t.Columns[i].Shrink {
				cell = shortenLeft(cell, widths[i])
			}
			parts[i] = pad(cell, widths[i], t.Columns[i].Align)
		}
		_, err := fmt.Fprintln(w, strings.TrimRight(strings.Join(parts, "  "), " "))
		return err
	}
	headers := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		headers[i] = c.Header
	}
	if err := line(headers); err != nil {
		return err
	}
	for _, row := range t.Rows {
		if err := line(row); err != nil {
			return err
		}
	}
	return nil
}

// WriteTerminal renders each file's models as a table in network order,
// one row per layer, followed by the summary, the convs and BatchNorms
// left unpaired, the ambiguous ones and pair discovery's notes. Every line
// fits opts.Width (default 120) characters; free text is wrapped.
func WriteTerminal(w io.Writer, files []*analysis.FileReport, opts Options) error {
	width := opts.Width
	if width <= 0 {
		width = DefaultWidth
	}
	ew := &errWriter{w: w}
	opt := analysis.SGD
	for fi, f := range files {
		opt = f.Options.Optimizer
		if fi > 0 {
			ew.println("")
		}
		ew.wrap(width, "", fmt.Sprintf("%s (%s)", f.Path, f.Format))
		for _, warning := range f.Warnings {
			ew.wrap(width, "  ", "warning: "+warning)
		}
		for _, m := range f.Models {
			writeTerminalModel(ew, m, width, opt, opts.PerChannel)
		}
	}
	for _, f := range opts.Failures {
		ew.println("")
		ew.wrap(width, "", fmt.Sprintf("not analyzed: %s: %s", f.File, f.Error))
	}
	if opts.Legend {
		ew.println("")
		ew.println("Columns:")
		if opts.PerChannel {
			ew.print(ChannelLegend())
		} else {
			ew.print(Legend(opt))
		}
	}
	return ew.err
}

func writeTerminalModel(ew *errWriter, m *analysis.ModelReport, width int, opt analysis.Optimizer, perChannel bool) {
	heading := "model"
	if m.Key != "" {
		heading += " " + m.Key
	} else {
		heading += " (top level)"
	}
	if m.StrippedPrefix != "" {
		heading += fmt.Sprintf(", prefix %q removed from names", m.StrippedPrefix)
	}
	ew.wrap(width, "", heading+":")
	if len(m.Layers) == 0 {
		ew.println("no Conv→BatchNorm pairs found")
	} else if ew.err == nil {
		table := NewLayerTable(m, opt)
		if perChannel {
			table = NewChannelTable(m)
		}
		ew.err = table.WriteText(ew.w, width)
	}
	for _, line := range SummaryLines(m.Summary) {
		ew.wrap(width, "  ", line)
	}
	// Flags and model notes (such as "already fused") come before the
	// lists of unpaired modules, which can be long.
	for _, l := range m.Layers {
		if line := FlaggedChannels(l); line != "" {
			ew.wrap(width, "  ", fmt.Sprintf("flags on %s: %s", l.Conv, line))
		}
	}
	for _, n := range m.Notes {
		ew.wrap(width, "  ", "note: "+n)
	}
	for _, a := range m.Ambiguous {
		ew.wrap(width, "  ", fmt.Sprintf("ambiguous %s (candidates %s): %s", a.Name, strings.Join(a.Candidates, ", "), a.Reason))
	}
	for _, u := range m.Unpaired {
		ew.wrap(width, "  ", fmt.Sprintf("unpaired %s %s: %s", u.Kind, u.Name, u.Reason))
	}
	for _, l := range m.Layers {
		for _, n := range l.Notes {
			ew.wrap(width, "  ", fmt.Sprintf("note on %s: %s", l.Conv, n))
		}
	}
}

// maxListedChannels bounds how many channel indices FlaggedChannels names
// per flag; the count is always given in full.
const maxListedChannels = 5

// FlaggedChannels describes a layer's flagged channels, one clause per
// flag in a fixed order, such as "tiny-variance: 1 channel (9)". It
// returns "" when no channel is flagged.
func FlaggedChannels(l *analysis.Layer) string {
	byFlag := map[analysis.Flag][]int{}
	var order []analysis.Flag
	for _, ch := range l.Channels {
		for _, f := range ch.Flags {
			if _, seen := byFlag[f]; !seen {
				order = append(order, f)
			}
			byFlag[f] = append(byFlag[f], ch.Index)
		}
	}
	sort.Slice(order, func(i, j int) bool { return order[i] < order[j] })
	var clauses []string
	for _, f := range order {
		idx := byFlag[f]
		noun := "channels"
		if len(idx) == 1 {
			noun = "channel"
		}
		var names []string
		for _, i := range idx[:min(len(idx), maxListedChannels)] {
			names = append(names, strconv.Itoa(i))
		}
		if len(idx) > maxListedChannels {
			names = append(names, "...")
		}
		clauses = append(clauses, fmt.Sprintf("%s: %d %s (%s)", f, len(idx), noun, strings.Join(names, ", ")))
	}
	return strings.Join(clauses, "; ")
}

// count writes n with noun, adding "s" unless n is 1.
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// SummaryLines describes a model summary in two sentences: the counts,
// then where the largest and smallest distortion are.
func SummaryLines(s analysis.Summary) []string {
	d := "D_SGD"
	if s.Optimizer == analysis.Adam {
		d = "D_Adam"
	}
	invalid := ""
	if s.RiskyInvalid > 0 {
		invalid = fmt.Sprintf(", %d with invalid statistics", s.RiskyInvalid)
	}
	lines := []string{fmt.Sprintf("Summary: %s, %s, %d dead; risky layers (medium or high): %d overshoot, %d stall%s.",
		count(s.Layers, "layer"), count(s.Channels, "channel"), s.Dead, s.RiskyOvershoot, s.RiskyStall, invalid)}
	if s.MaxLayer == "" {
		if s.Layers > 0 {
			lines = append(lines, fmt.Sprintf("No channel has a finite %s.", d))
		}
		return lines
	}
	lines = append(lines, fmt.Sprintf("Largest %s %s at %s channel %d; smallest %s at %s channel %d.",
		d, FormatCompact(s.MaxDistortion), s.MaxLayer, s.MaxChannel,
		FormatCompact(s.MinDistortion), s.MinLayer, s.MinChannel))
	return lines
}

// errWriter keeps the first write error so a renderer can check once.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) print(s string) {
	if e.err == nil {
		_, e.err = io.WriteString(e.w, s)
	}
}

func (e *errWriter) println(s string) { e.print(s + "\n") }

// wrap writes text in lines of at most width characters, breaking at
// spaces. Continuation lines get indent plus two spaces, and a word longer
// than a line is shortened from the left.
func (e *errWriter) wrap(width int, indent, text string) {
	text = displayText(text)
	line := indent
	lineLen := utf8.RuneCountInString(line)
	start := true
	cont := indent + "  "
	for _, word := range strings.Fields(text) {
		wl := utf8.RuneCountInString(word)
		if !start && lineLen+1+wl > width {
			e.println(line)
			line, lineLen, start = cont, utf8.RuneCountInString(cont), true
		}
		if start {
			room := width - lineLen
			if wl > room {
				word = shortenLeft(word, room)
				wl = utf8.RuneCountInString(word)
			}
			line += word
			lineLen += wl
			start = false
			continue
		}
		line += " " + word
		lineLen += 1 + wl
	}
	if !start {
		e.println(line)
	}
}
