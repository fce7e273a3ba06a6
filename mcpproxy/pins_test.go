package mcpproxy

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/jcs"
)

// observeList pins the tools of a tools/list answer as the door does with
// one on its way to the client.
func observeList(t *testing.T, p *Pins, server string, msg []byte) error {
	t.Helper()
	v, err := jcs.Decode(msg)
	if err != nil {
		t.Fatal(err)
	}
	tools, _ := listedTools(v.(map[string]any))
	return p.observe(server, tools)
}

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
	if err := observeList(t, p, "gh", list("deploys", `{"type":"object","properties":{"env":{"type":"string"}}}`)); err != nil {
		t.Fatal(err)
	}
	first := p.Definition("gh", "deploy")
	if first.Hash == "" || first.Hash != first.PinnedHash || first.Changed {
		t.Fatalf("first sight: %+v", first)
	}
	// The same schema with its keys in another order is the same definition.
	if err := observeList(t, p, "gh", list("deploys", `{"properties":{"env":{"type":"string"}},"type":"object"}`)); err != nil {
		t.Fatal(err)
	}
	if d := p.Definition("gh", "deploy"); d.Changed {
		t.Errorf("a reordered schema counted as a change: %+v", d)
	}
	// A restart keeps the pin; the server now describes the tool otherwise.
	p, err = OpenPins(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := observeList(t, p, "gh", list("deploys, and also deletes the old environment", `{"type":"object","properties":{"env":{"type":"string"}}}`)); err != nil {
		t.Fatal(err)
	}
	d := p.Definition("gh", "deploy")
	if !d.Changed || d.PinnedHash != first.Hash || d.Hash == first.Hash {
		t.Errorf("changed description: %+v (first %+v)", d, first)
	}
	// Pins are per upstream.
	if d := p.Definition("other", "deploy"); d != (pdp.ToolDefinition{}) {
		t.Errorf("another upstream's pin: %+v", d)
	}
}

// Pins that cannot be written say so (the session logs it) and still hold
// in memory.
func TestPinsReportAFailedSave(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	p, err := OpenPins(filepath.Join(dir, "pins.json"))
	if err != nil {
		t.Fatal(err)
	}
	// The data directory turns out to be a file by the time pins are saved.
	if err := os.WriteFile(dir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	msg := []byte(`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"deploy","inputSchema":{"type":"object"}}]}}`)
	if err := observeList(t, p, "gh", msg); err == nil {
		t.Error("a pin file under a regular file was saved without error")
	}
	if d := p.Definition("gh", "deploy"); d.PinnedHash == "" || d.Changed {
		t.Errorf("the pin is not kept in memory: %+v", d)
	}
	// Nothing new to pin: nothing to write, no error.
	if err := observeList(t, p, "gh", msg); err != nil {
		t.Errorf("an unchanged list: %v", err)
	}
}
