package pdp

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"go.yaml.in/yaml/v3"
)

// InventoryAgent is one agent's entry in inventory.yaml.
type InventoryAgent struct {
	AllowedActions    []string  `yaml:"allowed_actions" json:"allowed_actions,omitempty"`
	AllowedUserGroups []string  `yaml:"allowed_user_groups" json:"allowed_user_groups,omitempty"`
	Environment       string    `yaml:"environment" json:"environment,omitempty"`
	Expires           time.Time `yaml:"expires" json:"expires,omitzero"`
	ID                string    `yaml:"id" json:"id"`
	MaxCallsPerMinute int       `yaml:"max_calls_per_minute" json:"max_calls_per_minute,omitempty"`
	OwnerTeam         string    `yaml:"owner_team" json:"owner_team,omitempty"`
	RequiresApproval  []string  `yaml:"requires_approval" json:"requires_approval,omitempty"`
	TrustLevel        string    `yaml:"trust_level" json:"trust_level,omitempty"`
	Type              string    `yaml:"type" json:"type,omitempty"`

	terms agentTerms
}

// Inventory lists the agents the PDP knows.
type Inventory struct {
	Agents []InventoryAgent `yaml:"agents" json:"agents"`
	byID   map[string]*InventoryAgent
}

// agentTerms are an inventory entry's lists as Rego terms, built once.
type agentTerms struct {
	allowedActions, allowedUserGroups, requiresApproval *ast.Term
}

// Lookup finds an agent by id.
func (inv *Inventory) Lookup(id string) (*InventoryAgent, bool) {
	if inv == nil {
		return nil, false
	}
	a, ok := inv.byID[id]
	return a, ok
}

// merge overlays the inventory entry on the caller's identity: the inventory
// is authoritative for everything it states.
func (a *InventoryAgent) merge(dst *Agent) {
	dst.Registered = true
	dst.inv = a
	dst.AllowedActions = a.AllowedActions
	dst.AllowedUserGroups = a.AllowedUserGroups
	dst.Expires = a.Expires
	dst.MaxCallsPerMinute = a.MaxCallsPerMinute
	dst.RequiresApproval = a.RequiresApproval
	if a.Environment != "" {
		dst.Environment = a.Environment
	}
	if a.OwnerTeam != "" {
		dst.OwnerTeam = a.OwnerTeam
	}
	if a.TrustLevel != "" {
		dst.TrustLevel = a.TrustLevel
	}
	if a.Type != "" {
		dst.Type = a.Type
	}
}

var trustLevels = map[string]bool{"": true, "low": true, "medium": true, "high": true}

// ParseInventory reads inventory YAML; unknown keys and duplicate ids are errors.
func ParseInventory(file string, src []byte) (*Inventory, error) {
	inv := &Inventory{byID: map[string]*InventoryAgent{}}
	dec := yaml.NewDecoder(bytes.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(inv); err != nil && !errors.Is(err, io.EOF) {
		return nil, LocateYAMLError(file, src, err)
	}
	var root yaml.Node
	_ = yaml.Unmarshal(src, &root)
	for i := range inv.Agents {
		a := &inv.Agents[i]
		line := seqItemLine(&root, "agents", i)
		switch {
		case a.ID == "":
			return nil, SourceError{File: file, Line: line, Msg: fmt.Sprintf("agent %d has no id", i+1)}
		case inv.byID[a.ID] != nil:
			return nil, SourceError{File: file, Line: line, Msg: fmt.Sprintf("agent %q listed twice", a.ID)}
		case !trustLevels[a.TrustLevel]:
			return nil, SourceError{File: file, Line: line, Msg: fmt.Sprintf("agent %q: trust_level %q is not low, medium or high", a.ID, a.TrustLevel)}
		case a.MaxCallsPerMinute < 0:
			return nil, SourceError{File: file, Line: line, Msg: fmt.Sprintf("agent %q: max_calls_per_minute is negative", a.ID)}
		}
		a.terms = agentTerms{
			allowedActions:    stringsTerm(a.AllowedActions),
			allowedUserGroups: stringsTerm(a.AllowedUserGroups),
			requiresApproval:  stringsTerm(a.RequiresApproval),
		}
		inv.byID[a.ID] = a
	}
	return inv, nil
}
