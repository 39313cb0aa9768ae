package checkpoint

import (
	"bufio"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// maxTorchScriptCode bounds the bytes of code/ records read for Final
// constants. Real archives hold well under a megabyte of code.
const maxTorchScriptCode = 64 << 20

// torchScriptClass is the declarations that the code of one scripted class
// makes: Final constants and parameter slots.
type torchScriptClass struct {
	// constants maps each Final attribute to its value: int64, float64,
	// bool, string, nil, or []any of those for a tuple.
	constants map[string]any
	// slots lists the names in __parameters__ and __buffers__.
	slots []string
}

// declares reports whether name is one of the class's parameters or
// buffers.
func (c *torchScriptClass) declares(name string) bool {
	for _, s := range c.slots {
		if s == name {
			return true
		}
	}
	return false
}

// Lines of TorchScript class code that carry what the reader needs. The
// code is never executed: only these declarations are matched.
var (
	tsClassRE    = regexp.MustCompile(`^class ([A-Za-z_][A-Za-z0-9_]*)\(`)
	tsFinalRE    = regexp.MustCompile(`^  ([A-Za-z_][A-Za-z0-9_]*) : Final\[(.*?)\] = (.*)$`)
	tsSlotListRE = regexp.MustCompile(`^  (__parameters__|__buffers__) = \[(.*)\]$`)
)

// readTorchScriptCode parses the code/ records of a TorchScript archive for
// the Final constants and parameter lists of each class, keyed by the
// fully qualified class name that data.pkl uses.
func readTorchScriptCode(z *zipReader, f *File) (map[string]*torchScriptClass, error) {
	classes := map[string]*torchScriptClass{}
	prefix := z.root + "code/"
	budget := int64(maxTorchScriptCode)
	for _, name := range slices.Sorted(maps.Keys(z.entries)) {
		if !strings.HasPrefix(name, prefix) || !strings.HasSuffix(name, ".py") {
			continue
		}
		entry := z.entries[name]
		if int64(entry.UncompressedSize64) > budget {
			f.Warnings = append(f.Warnings, fmt.Sprintf("skipped code record %s: the code records exceed %d bytes in all", name, maxTorchScriptCode))
			continue
		}
		budget -= int64(entry.UncompressedSize64)
		rc, err := entry.Open()
		if err != nil {
			return nil, &FormatError{Path: z.path, Format: FormatTorchScript, Record: name, Offset: -1, Err: ErrTruncated, Reason: fmt.Sprintf("cannot open the record: %v", err)}
		}
		module := strings.ReplaceAll(strings.TrimSuffix(strings.TrimPrefix(name, prefix), ".py"), "/", ".")
		err = parseTorchScriptCode(io.LimitReader(rc, int64(entry.UncompressedSize64)), module, classes)
		rc.Close()
		if err != nil {
			return nil, &FormatError{Path: z.path, Format: FormatTorchScript, Record: name, Offset: -1, Err: ErrTruncated, Reason: fmt.Sprintf("cannot read the record: %v", err)}
		}
	}
	return classes, nil
}

// parseTorchScriptCode adds the classes declared in one code record of
// the given Python module to classes.
func parseTorchScriptCode(r io.Reader, module string, classes map[string]*torchScriptClass) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	var cur *torchScriptClass
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if m := tsClassRE.FindStringSubmatch(line); m != nil {
			cur = &torchScriptClass{constants: map[string]any{}}
			classes[module+"."+m[1]] = cur
			continue
		}
		if cur == nil {
			continue
		}
		if line != "" && line[0] != ' ' {
			cur = nil
			continue
		}
		if m := tsFinalRE.FindStringSubmatch(line); m != nil {
			if v, ok := parseTorchScriptLiteral(m[3]); ok {
				cur.constants[m[1]] = v
			}
			continue
		}
		if m := tsSlotListRE.FindStringSubmatch(line); m != nil {
			for _, item := range strings.Split(m[2], ",") {
				if s, ok := parseTorchScriptLiteral(item); ok {
					if name, ok := s.(string); ok {
						cur.slots = append(cur.slots, name)
					}
				}
			}
		}
	}
	if err := sc.Err(); err != nil && err != bufio.ErrTooLong {
		return err
	}
	return nil
}

// parseTorchScriptLiteral parses the constant literals that TorchScript
// writes for Final attributes: ints, floats, True, False, None, quoted
// strings without escapes, and tuples of those. Anything else is rejected.
func parseTorchScriptLiteral(s string) (any, bool) {
	s = strings.TrimSpace(s)
	switch s {
	case "":
		return nil, false
	case "True":
		return true, true
	case "False":
		return false, true
	case "None":
		return nil, true
	}
	if len(s) >= 2 && (s[0] == '"' || s[0] == '\'') && s[len(s)-1] == s[0] {
		body := s[1 : len(s)-1]
		if strings.ContainsAny(body, "\\\"'") {
			return nil, false
		}
		return body, true
	}
	if len(s) >= 2 && s[0] == '(' && s[len(s)-1] == ')' {
		body := strings.TrimSpace(s[1 : len(s)-1])
		items := []any{}
		if body == "" {
			return items, true
		}
		parts := strings.Split(body, ",")
		if strings.TrimSpace(parts[len(parts)-1]) == "" {
			parts = parts[:len(parts)-1]
		}
		for _, p := range parts {
			v, ok := parseTorchScriptLiteral(p)
			if !ok {
				return nil, false
			}
			if _, nested := v.([]any); nested {
				return nil, false
			}
			items = append(items, v)
		}
		return items, true
	}
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		return i, true
	}
	if v, err := strconv.ParseFloat(s, 64); err == nil && strings.ContainsAny(s, ".eE") {
		return v, true
	}
	return nil, false
}
