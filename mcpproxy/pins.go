package mcpproxy

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/jcs"
)

// Pins remembers each tool's definition (name, description, input schema)
// as first seen per upstream, so a tool whose definition changes under a
// running agent (a "rug pull") shows in context.tool_definition and
// policy can hold the call. Persisted in the data dir.
type Pins struct {
	path string
	mu   sync.Mutex
	// pinned: server → tool → hash at first sight; current: as last listed.
	pinned  map[string]map[string]string
	current map[string]map[string]string
}

// OpenPins loads (or starts) the pin file at path; "" keeps pins in memory.
func OpenPins(path string) (*Pins, error) {
	p := &Pins{path: path, pinned: map[string]map[string]string{}, current: map[string]map[string]string{}}
	if path == "" {
		return p, nil
	}
	b, err := os.ReadFile(path)
	switch {
	case os.IsNotExist(err):
		return p, nil
	case err != nil:
		return nil, err
	}
	if err := json.Unmarshal(b, &p.pinned); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if p.pinned == nil {
		p.pinned = map[string]map[string]string{}
	}
	return p, nil
}

// observe records the definitions of a tools/list result's tools
// (listedTools), each read as encoding/json reads it into {name,
// description string; inputSchema raw}: one that cannot be (not an
// object, a name or description that is not a string) or has no name is
// passed over. The error is that of writing new pins to disk (they are
// kept in memory regardless).
func (p *Pins) observe(server string, tools []any) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pinned[server] == nil {
		p.pinned[server] = map[string]string{}
	}
	if p.current[server] == nil {
		p.current[server] = map[string]string{}
	}
	changed := false
	for _, it := range tools {
		t, _ := it.(map[string]any)
		name, nameOK := optional[string](t, "name")
		desc, descOK := optional[string](t, "description")
		if t == nil || !nameOK || !descOK || name == "" {
			continue
		}
		// The schema as it came, null included, canonical (jcs.Decode
		// read it, so it has a canonical form).
		var schema []byte
		if v, ok := member(t, "inputSchema"); ok {
			schema, _ = jcs.Append(nil, v)
		}
		h := definitionHash(name, desc, schema)
		p.current[server][name] = h
		if _, ok := p.pinned[server][name]; !ok {
			p.pinned[server][name] = h
			changed = true
		}
	}
	if !changed {
		return nil
	}
	return p.save()
}

// Definition is context.tool_definition for a call to tool; empty when the
// tool was never listed.
func (p *Pins) Definition(server, tool string) pdp.ToolDefinition {
	p.mu.Lock()
	defer p.mu.Unlock()
	cur, pin := p.current[server][tool], p.pinned[server][tool]
	if cur == "" && pin == "" {
		return pdp.ToolDefinition{}
	}
	return pdp.ToolDefinition{Hash: cur, PinnedHash: pin, Changed: cur != "" && pin != "" && cur != pin}
}

// save writes the pins atomically.
func (p *Pins) save() error {
	if p.path == "" {
		return nil
	}
	b, err := json.MarshalIndent(p.pinned, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p.path), 0o700); err != nil {
		return err
	}
	tmp := p.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, p.path)
}

// definitionHash hashes a tool's name, description and canonical input
// schema (empty when it has none).
func definitionHash(name, desc string, schema []byte) string {
	h := sha256.New()
	for _, part := range [][]byte{[]byte(name), []byte(desc), schema} {
		fmt.Fprintf(h, "%d:", len(part))
		h.Write(part)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}
