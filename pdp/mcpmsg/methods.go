package mcpmsg

import "github.com/agentpdp/agentpdp/pdp/jcs"

// Who sends a method.
const (
	fromClient = 1 << iota
	fromServer
	isNotification
)

// methods are the MCP specification's methods (2024-11-05 … 2026-07-28),
// by who may send them. Names are exact: a server's lenient dispatch must
// not turn `Tools/Call` into a call that policy never saw as one.
var methods = map[string]uint8{
	"initialize":               fromClient,
	"ping":                     fromClient | fromServer,
	"server/discover":          fromClient,
	"tools/list":               fromClient,
	"tools/call":               fromClient,
	"resources/list":           fromClient,
	"resources/templates/list": fromClient,
	"resources/read":           fromClient,
	"resources/subscribe":      fromClient,
	"resources/unsubscribe":    fromClient,
	"prompts/list":             fromClient,
	"prompts/get":              fromClient,
	"completion/complete":      fromClient,
	"logging/setLevel":         fromClient,
	"tasks/get":                fromClient | fromServer,
	"tasks/list":               fromClient | fromServer,
	"tasks/result":             fromClient | fromServer,
	"tasks/cancel":             fromClient | fromServer,
	// The tasks extension's 2026-07-28 shape: a client answers a task's
	// input requests (inputResponses) by its taskId.
	"tasks/update":           fromClient,
	"sampling/createMessage": fromServer,
	"elicitation/create":     fromServer,
	"roots/list":             fromServer,
	"subscriptions/listen":   fromClient,

	"notifications/initialized":                fromClient | isNotification,
	"notifications/cancelled":                  fromClient | fromServer | isNotification,
	"notifications/progress":                   fromClient | fromServer | isNotification,
	"notifications/roots/list_changed":         fromClient | isNotification,
	"notifications/tasks/status":               fromClient | fromServer | isNotification,
	"notifications/message":                    fromServer | isNotification,
	"notifications/resources/updated":          fromServer | isNotification,
	"notifications/resources/list_changed":     fromServer | isNotification,
	"notifications/tools/list_changed":         fromServer | isNotification,
	"notifications/prompts/list_changed":       fromServer | isNotification,
	"notifications/elicitation/complete":       fromServer | isNotification,
	"notifications/subscriptions/acknowledged": fromServer | isNotification,
}

// foldedMethods finds a method spelt in another case.
var foldedMethods = func() map[string]string {
	m := make(map[string]string, len(methods))
	for k := range methods {
		m[jcs.FoldName(k)] = k
	}
	return m
}()

// Methods is the set of methods a door accepts from clients: the
// specification's plus the ones its configuration names (a server's own
// extensions).
type Methods struct {
	extra  map[string]bool
	folded map[string]string
}

// NewMethods accepts the specification's methods and extra.
func NewMethods(extra []string) *Methods {
	m := &Methods{extra: map[string]bool{}, folded: map[string]string{}}
	for _, e := range extra {
		m.extra[e] = true
		m.folded[jcs.FoldName(e)] = e
	}
	return m
}

// Spec accepts the specification's methods only.
var Spec = NewMethods(nil)

// resembles reports whether name is a method this set knows in some case.
func (m *Methods) resembles(name string) bool {
	f := jcs.FoldName(name)
	_, ok := foldedMethods[f]
	if !ok {
		_, ok = m.folded[f]
	}
	return ok
}
