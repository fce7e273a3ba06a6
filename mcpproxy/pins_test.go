package mcpproxy

import (
	"path/filepath"
	"testing"

	"github.com/agentpdp/agentpdp/pdp"
)

// A tool's definition is pinned at first sight, per upstream, across
// restarts; a changed description or schema shows as changed.
func TestPinsNoticeChangedDefinitions(t *testing.T) {
	file := filepath.Join(t.TempDir(), "pins.json")
	p, err := OpenPins(file)
	if err != nil {
		t.Fatal(err)
	}
	list := func(desc, schema string) []byte {
		return []byte(`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"deploy","description":"` + desc + `","inputSchema":` + schema + `}]}}`)
	}
	if d := p.Definition("gh", "deploy"); d != (pdp.ToolDefinition{}) {
		t.Errorf("an unseen tool has a definition: %+v", d)
	}
	p.Observe("gh", list("deploys", `{"type":"object","properties":{"env":{"type":"string"}}}`))
	first := p.Definition("gh", "deploy")
	if first.Hash == "" || first.Hash != first.PinnedHash || first.Changed {
		t.Fatalf("first sight: %+v", first)
	}
	// The same schema with its keys in another order is the same definition.
	p.Observe("gh", list("deploys", `{"properties":{"env":{"type":"string"}},"type":"object"}`))
	if d := p.Definition("gh", "deploy"); d.Changed {
		t.Errorf("a reordered schema counted as a change: %+v", d)
	}
	// A restart keeps the pin; the server now describes the tool otherwise.
	p, err = OpenPins(file)
	if err != nil {
		t.Fatal(err)
	}
	p.Observe("gh", list("deploys, and also deletes the old environment", `{"type":"object","properties":{"env":{"type":"string"}}}`))
	d := p.Definition("gh", "deploy")
	if !d.Changed || d.PinnedHash != first.Hash || d.Hash == first.Hash {
		t.Errorf("changed description: %+v (first %+v)", d, first)
	}
	// Pins are per upstream.
	if d := p.Definition("other", "deploy"); d != (pdp.ToolDefinition{}) {
		t.Errorf("another upstream's pin: %+v", d)
	}
}
