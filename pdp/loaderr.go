package pdp

import (
	"fmt"
	"strings"
)

// SourceError is one problem in a policy file, located as file:line:col.
type SourceError struct {
	File string
	Line int
	Col  int
	Msg  string
}

func (e SourceError) Error() string {
	switch {
	case e.Line > 0 && e.Col > 0:
		return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg)
	case e.Line > 0:
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	case e.File != "":
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	}
	return e.Msg
}

// SourceErrors is every problem found while loading a policy set; one line each.
type SourceErrors []SourceError

func (es SourceErrors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}
