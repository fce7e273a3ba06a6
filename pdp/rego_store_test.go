package pdp

import (
	"context"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/storage"
)

// A decision holds no store transaction once it is made: a writer (what
// approvals or bundles would be) gets through between decisions instead
// of waiting forever on a read lock nobody releases.
func TestRegoStoreNotHeldBetweenDecisions(t *testing.T) {
	set := onlyEngine(loadBasic(t), "rego-nocache")
	p := New(set, Options{Timeout: time.Second})
	ctx := context.Background()
	p.Decide(ctx, call(reviewer, "alice@example.com", "github.create_issue", nil))

	done := make(chan error, 1)
	go func() {
		st := set.rego.store
		txn, err := st.NewTransaction(ctx, storage.WriteParams)
		if err != nil {
			done <- err
			return
		}
		if err := st.Write(ctx, txn, storage.AddOp, storage.MustParsePath("/probe"), "x"); err != nil {
			done <- err
			return
		}
		done <- st.Commit(ctx, txn)
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a store writer is blocked after a decision: a read transaction was left open")
	}
	// And decisions go on after the write.
	if d := p.Decide(ctx, call(reviewer, "alice@example.com", "github.create_issue", nil)); d.Effect == "" {
		t.Fatal("no decision after a store write")
	}
}
