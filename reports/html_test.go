package reports

import (
	"bytes"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/net/html"

	"github.com/convbn-diag/convbn-diag/analysis"
)

// renderHTML returns WriteHTML's page for the "flags" example.
func renderHTML(t *testing.T, opt analysis.Optimizer) ([]byte, *analysis.FileReport) {
	t.Helper()
	m, opts := flagsModel(t, opt)
	fr := &analysis.FileReport{Path: "flags.pt", Format: "pytorch-zip", Models: []*analysis.ModelReport{m}, Options: opts}
	var buf bytes.Buffer
	if err := WriteHTML(&buf, fr, HTMLOptions{ToolVersion: "test"}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), fr
}

func TestHTMLParsesAndNamesLayers(t *testing.T) {
	page, fr := renderHTML(t, analysis.SGD)
	doc, err := html.Parse(bytes.NewReader(page))
	if err != nil {
		t.Fatalf("page does not parse: %v", err)
	}

	var svgs, tableRows, figures int
	cellText := map[string]bool{}
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			switch n.Data {
			case "svg":
				svgs++
			case "figure":
				figures++
			case "tr":
				tableRows++
			case "td":
				if n.FirstChild != nil && n.FirstChild.Type == html.TextNode {
					cellText[n.FirstChild.Data] = true
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)

	m := fr.Models[0]
	if svgs != len(FigureNames) || figures != len(FigureNames) {
		t.Errorf("page has %d svg and %d figure elements, want %d of each", svgs, figures, len(FigureNames))
	}
	if want := len(m.Layers) + 1; tableRows != want {
		t.Errorf("layer table has %d rows with the header, want %d", tableRows, want)
	}
	for _, l := range m.Layers {
		if !cellText[l.Conv] {
			t.Errorf("layer %s is not in a table cell", l.Conv)
		}
	}
	text := string(page)
	for _, want := range []string{"features.6", "risk high (overshoot)", "stored in the checkpoint", "eps source"} {
		if !strings.Contains(text, want) {
			t.Errorf("page lacks %q", want)
		}
	}
}

// externalRef matches the ways a page can load something from outside
// itself.
var externalRef = regexp.MustCompile(`(?i)(\b(src|href|xlink:href|action|srcset|poster|data)\s*=|@import|url\(\s*['"]?(?:[^d'"\s]|d[^a])|<script|<link|<iframe|<object|<embed|<img)`)

func TestHTMLSelfContained(t *testing.T) {
	for _, opt := range []analysis.Optimizer{analysis.SGD, analysis.Adam} {
		page, _ := renderHTML(t, opt)
		if loc := externalRef.FindIndex(page); loc != nil {
			lo, hi := max(0, loc[0]-60), min(len(page), loc[1]+60)
			t.Errorf("%s page references something outside itself: …%s…", opt, page[lo:hi])
		}
	}
}

func TestHTMLSelfContainedCheckFails(t *testing.T) {
	for _, bad := range []string{
		`<img src="x.png">`,
		`<a href="https://example.com/">`,
		`<style>@import "a.css";</style>`,
		`<div style="background: url(http://example.com/a.png)">`,
		`<script>alert(1)</script>`,
	} {
		if !externalRef.MatchString(bad) {
			t.Errorf("the self-containment check misses %s", bad)
		}
	}
	if externalRef.MatchString(`<div style="background: url(data:image/png;base64,AAAA)">`) {
		t.Errorf("the self-containment check rejects a data: URL")
	}
}

func TestHTMLEscapesNames(t *testing.T) {
	m, opts := flagsModel(t, analysis.SGD)
	m.Layers[0].Conv = `features.0<script>alert("x")</script>`
	fr := &analysis.FileReport{Path: "a&b.pt", Models: []*analysis.ModelReport{m}, Options: opts}
	var buf bytes.Buffer
	if err := WriteHTML(&buf, fr, HTMLOptions{NoFigures: true}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), "<script>") {
		t.Errorf("a layer name reached the page unescaped")
	}
	if !strings.Contains(buf.String(), "a&amp;b.pt") {
		t.Errorf("the file name is not escaped")
	}
}
