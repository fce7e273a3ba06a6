// Package policies holds the example policy set that agentpdp serves when no
// policy directory is configured.
package policies

import "embed"

// FS is the built-in example policy set (examples/ holds sample inputs and
// is not part of the set).
//
//go:embed *.rego *.yaml
var FS embed.FS
