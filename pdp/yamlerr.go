package pdp

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

var (
	yamlTypeLineRe = regexp.MustCompile(`line (\d+)(?::(\d+))?: (.*)`)
	yamlSyntaxRe   = regexp.MustCompile(`^yaml: (?:line (\d+): )?(.*)$`)
)

// yamlLocateBudget bounds the bytes re-parsed to find a syntax error's
// line (the search is quadratic in the file's length): far more than any
// policy or config file, small enough to stay quick on a huge one.
const yamlLocateBudget = 32 << 20

// LocateYAMLError turns an error from decoding src with
// go.yaml.in/yaml/v3 into a SourceError at the line of the problem.
//
// Type errors (unknown field, wrong type, duplicate key) carry the line of
// the node itself. Syntax errors do not: yaml.v3 reports the start of the
// enclosing construct, and for parser errors one line before even that
// (a tab on line 6 comes out as line 5, a bad indent on line 14 as line
// 4), so the line is found again by parsing ever longer prefixes of src:
// the first one that fails with the same message ends on the line at
// fault. When none does, the message says "near line N" instead of
// pretending N is exact.
func LocateYAMLError(file string, src []byte, err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		if m := yamlTypeLineRe.FindStringSubmatch(te.Errors[0]); m != nil {
			line, _ := strconv.Atoi(m[1])
			col, _ := strconv.Atoi(m[2])
			return SourceError{File: file, Line: line, Col: col, Msg: m[3]}
		}
		return SourceError{File: file, Msg: te.Errors[0]}
	}
	m := yamlSyntaxRe.FindStringSubmatch(err.Error())
	if m == nil {
		return SourceError{File: file, Msg: err.Error()}
	}
	reported, _ := strconv.Atoi(m[1]) // 0: yaml.v3 gave no line
	msg := m[2]
	lines := lineEnds(src)
	if line := yamlSyntaxLine(src, lines, reported, msg); line > 0 {
		return SourceError{File: file, Line: line, Col: leadingTabCol(src, lines, line), Msg: msg}
	}
	if reported > 0 {
		msg = fmt.Sprintf("near line %d: %s", reported, msg)
	}
	return SourceError{File: file, Msg: msg}
}

// lineEnds returns the offset just past each line of src (its newline
// included).
func lineEnds(src []byte) []int {
	var ends []int
	for off := 0; off < len(src); {
		i := bytes.IndexByte(src[off:], '\n')
		if i < 0 {
			ends = append(ends, len(src))
			break
		}
		off += i + 1
		ends = append(ends, off)
	}
	return ends
}

// yamlSyntaxLine is the first line whose prefix of src fails to parse
// with msg, or 0. That line is never before the one yaml.v3 reported (its
// marks precede the problem), so the search starts there, unless the
// prefix just before it already fails (a report past the problem).
func yamlSyntaxLine(src []byte, ends []int, reported int, msg string) int {
	if len(ends) == 0 {
		return 0
	}
	budget := yamlLocateBudget
	fails := func(l int) (bool, bool) {
		prefix := src[:ends[l-1]]
		if budget -= len(prefix); budget < 0 {
			return false, false
		}
		var n yaml.Node
		err := yaml.Unmarshal(prefix, &n)
		if err == nil {
			return false, true
		}
		m := yamlSyntaxRe.FindStringSubmatch(err.Error())
		return m != nil && m[2] == msg, true
	}
	start := min(max(reported, 1), len(ends))
	if start > 1 {
		if f, _ := fails(start - 1); f {
			start = 1
		}
	}
	for l := start; l <= len(ends); l++ {
		f, ok := fails(l)
		if !ok {
			return 0
		}
		if f {
			return l
		}
	}
	return 0
}

// leadingTabCol is the column of a tab in line's indentation, 0 if none:
// the usual culprit, and invisible in most editors.
func leadingTabCol(src []byte, ends []int, line int) int {
	begin := 0
	if line > 1 {
		begin = ends[line-2]
	}
	text := src[begin:ends[line-1]]
	indent := len(text) - len(bytes.TrimLeft(text, " \t"))
	if i := strings.IndexByte(string(text[:indent]), '\t'); i >= 0 {
		return i + 1
	}
	return 0
}
