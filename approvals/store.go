package approvals

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Store keeps approvals in SQL: SQLite in one process, PostgreSQL shared by
// replicas. Both speak the same statements (written with ? and rebound to
// $n for PostgreSQL). The columns other code filters or compare-and-sets on
// (state, digest, times, uses) are authoritative; the rest of the approval
// is one JSON document beside them.
type Store struct {
	db      *sql.DB
	dialect dialect
	// notify is how a change reaches waiters: in-process for SQLite,
	// LISTEN/NOTIFY for PostgreSQL (so another replica's change wakes
	// this one's waiters too).
	mu       sync.Mutex
	watchers map[int]func(id string)
	nextW    int
	closeFn  func()
}

type dialect int

const (
	sqlite dialect = iota
	postgres
)

// q rebinds ? placeholders for the dialect.
func (s *Store) q(query string) string {
	if s.dialect != postgres {
		return query
	}
	var b strings.Builder
	n := 0
	for i := 0; i < len(query); i++ {
		if query[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(query[i])
	}
	return b.String()
}

// migrations are applied in order, each once, recorded in
// agentpdp_schema_migrations. Append; never edit a released one.
var migrations = []string{
	`CREATE TABLE agentpdp_approvals (
		id TEXT PRIMARY KEY,
		state TEXT NOT NULL,
		digest TEXT NOT NULL,
		agent TEXT NOT NULL,
		user_id TEXT NOT NULL,
		requested_at BIGINT NOT NULL,
		expires_at BIGINT NOT NULL,
		grant_expires_at BIGINT NOT NULL DEFAULT 0,
		uses_left INTEGER NOT NULL DEFAULT 1,
		updated_at BIGINT NOT NULL,
		doc TEXT NOT NULL
	);
	CREATE UNIQUE INDEX agentpdp_approvals_one_pending ON agentpdp_approvals (digest) WHERE state = 'pending';
	CREATE INDEX agentpdp_approvals_digest_state ON agentpdp_approvals (digest, state);
	CREATE INDEX agentpdp_approvals_state_expiry ON agentpdp_approvals (state, expires_at);`,
}

// SchemaVersion is the schema this build writes.
var SchemaVersion = len(migrations)

func (s *Store) migrate(ctx context.Context) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	if s.dialect == postgres {
		// Replicas starting together: one migrates, the others wait.
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(7366584)`); err != nil {
			return err
		}
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS agentpdp_schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)`); err != nil {
		return err
	}
	var have int
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM agentpdp_schema_migrations`).Scan(&have); err != nil {
		return err
	}
	if have > len(migrations) {
		return fmt.Errorf("the approvals database is at schema version %d, newer than this agentpdp knows (%d): upgrade agentpdp", have, len(migrations))
	}
	for v := have + 1; v <= len(migrations); v++ {
		for _, stmt := range strings.Split(migrations[v-1], ";") {
			if strings.TrimSpace(stmt) == "" {
				continue
			}
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("migration %d: %w", v, err)
			}
		}
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO agentpdp_schema_migrations (version, applied_at) VALUES (?, ?)`), v, time.Now().UnixNano()); err != nil {
			return err
		}
	}
	return tx.Commit()
}

const columns = `id, state, digest, agent, user_id, requested_at, expires_at, grant_expires_at, uses_left, updated_at, doc`

type scanner interface{ Scan(dest ...any) error }

func scanApproval(r scanner) (*Approval, error) {
	var (
		a                                     Approval
		state, doc                            string
		requested, expires, grantExp, updated int64
	)
	if err := r.Scan(&a.ID, &state, &a.Digest, &a.Agent, &a.User, &requested, &expires, &grantExp, &a.UsesLeft, &updated, &doc); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, ErrNotFound
		}
		return nil, err
	}
	id, digest, agent, user, uses := a.ID, a.Digest, a.Agent, a.User, a.UsesLeft
	if err := json.Unmarshal([]byte(doc), &a); err != nil {
		return nil, fmt.Errorf("approval %s: %w", id, err)
	}
	// The columns win over the document: compare-and-set writes only them.
	a.ID, a.Digest, a.Agent, a.User, a.UsesLeft, a.State = id, digest, agent, user, uses, State(state)
	a.RequestedAt, a.ExpiresAt, a.UpdatedAt = fromNanos(requested), fromNanos(expires), fromNanos(updated)
	a.GrantExpiresAt = fromNanos(grantExp)
	return &a, nil
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// Create stores a as pending unless a pending approval with its digest
// exists, which it returns instead (created false).
func (s *Store) Create(ctx context.Context, a *Approval) (*Approval, bool, error) {
	doc, err := json.Marshal(a)
	if err != nil {
		return nil, false, err
	}
	for range 3 {
		res, err := s.db.ExecContext(ctx, s.q(`INSERT INTO agentpdp_approvals (`+columns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`),
			a.ID, string(Pending), a.Digest, a.Agent, a.User, nanos(a.RequestedAt), nanos(a.ExpiresAt), nanos(a.GrantExpiresAt), a.UsesLeft, nanos(a.UpdatedAt), string(doc))
		if err != nil {
			return nil, false, err
		}
		if n, _ := res.RowsAffected(); n == 1 {
			s.changed(ctx, a.ID)
			got := *a
			got.State = Pending
			return &got, true, nil
		}
		got, err := scanApproval(s.db.QueryRowContext(ctx, s.q(`SELECT `+columns+` FROM agentpdp_approvals WHERE digest = ? AND state = 'pending'`), a.Digest))
		if errors.Is(err, ErrNotFound) {
			continue // it left pending in between: try again
		}
		return got, false, err
	}
	return nil, false, errors.New("approvals: could not create or join a pending approval")
}

// Get returns one approval.
func (s *Store) Get(ctx context.Context, id string) (*Approval, error) {
	return scanApproval(s.db.QueryRowContext(ctx, s.q(`SELECT `+columns+` FROM agentpdp_approvals WHERE id = ?`), id))
}

// Filter selects approvals for List; empty fields match everything.
type Filter struct {
	State State
	Agent string
	User  string
	// Limit caps the result (default 100), newest first.
	Limit int
}

// List returns approvals matching f, newest first.
func (s *Store) List(ctx context.Context, f Filter) ([]*Approval, error) {
	query := `SELECT ` + columns + ` FROM agentpdp_approvals WHERE 1=1`
	var args []any
	for _, c := range []struct{ col, v string }{{"state", string(f.State)}, {"agent", f.Agent}, {"user_id", f.User}} {
		if c.v != "" {
			query += ` AND ` + c.col + ` = ?`
			args = append(args, c.v)
		}
	}
	if f.Limit <= 0 || f.Limit > 1000 {
		f.Limit = 100
	}
	query += ` ORDER BY requested_at DESC, id DESC LIMIT ` + strconv.Itoa(f.Limit)
	rows, err := s.db.QueryContext(ctx, s.q(query), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*Approval
	for rows.Next() {
		a, err := scanApproval(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// Update applies fn to approval id atomically (the row is locked while fn
// runs) and stores the result. fn returning an error stores nothing. after,
// when set, runs inside the transaction once the row is written: an error
// from it rolls the change back (the decision-log record of a transition
// must be written for the transition to happen).
func (s *Store) Update(ctx context.Context, id string, fn func(*Approval) error, after func(*Approval) error) (*Approval, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	lock := ""
	if s.dialect == postgres {
		lock = ` FOR UPDATE`
	}
	a, err := scanApproval(tx.QueryRowContext(ctx, s.q(`SELECT `+columns+` FROM agentpdp_approvals WHERE id = ?`+lock), id))
	if err != nil {
		return nil, err
	}
	if err := fn(a); err != nil {
		return a, err
	}
	doc, err := json.Marshal(a)
	if err != nil {
		return nil, err
	}
	if _, err := tx.ExecContext(ctx, s.q(`UPDATE agentpdp_approvals SET state = ?, grant_expires_at = ?, uses_left = ?, updated_at = ?, doc = ? WHERE id = ?`),
		string(a.State), nanos(a.GrantExpiresAt), a.UsesLeft, nanos(a.UpdatedAt), string(doc), id); err != nil {
		return nil, err
	}
	if err := s.notifyTx(ctx, tx, id); err != nil {
		return nil, err
	}
	if after != nil {
		if err := after(a); err != nil {
			return nil, err
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	s.changedLocal(id)
	return a, nil
}

// Consume uses the grant for digest: the oldest approved, unexpired,
// unused approval with that digest becomes consumed, by one
// compare-and-set statement that also returns it, so that of any number of
// concurrent callers on any number of replicas exactly one gets it.
// ErrNotFound when there is no grant to use.
func (s *Store) Consume(ctx context.Context, digest string, now time.Time) (*Approval, error) {
	for range 3 {
		var id string
		err := s.db.QueryRowContext(ctx, s.q(`SELECT id FROM agentpdp_approvals WHERE digest = ? AND state = 'approved' AND uses_left > 0 AND grant_expires_at > ? ORDER BY requested_at LIMIT 1`), digest, nanos(now)).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, ErrNotFound
		}
		if err != nil {
			return nil, err
		}
		a, err := scanApproval(s.db.QueryRowContext(ctx, s.q(`UPDATE agentpdp_approvals SET state = 'consumed', uses_left = uses_left - 1, updated_at = ? WHERE id = ? AND state = 'approved' AND uses_left > 0 AND grant_expires_at > ? RETURNING `+columns), nanos(now), id, nanos(now)))
		if errors.Is(err, ErrNotFound) {
			continue // another caller used that one first; there may be another grant
		}
		if err != nil {
			return nil, err
		}
		s.changed(ctx, id)
		return a, nil
	}
	return nil, ErrNotFound
}

// Expire ends what outlived its time: pending approvals past expires_at and
// grants past grant_expires_at, each by one compare-and-set statement that
// returns it, so that of concurrent sweeps on any number of replicas
// exactly one returns it. It returns them, now expired.
func (s *Store) Expire(ctx context.Context, now time.Time) ([]*Approval, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT id FROM agentpdp_approvals WHERE (state = 'pending' AND expires_at <= ?) OR (state = 'approved' AND grant_expires_at <= ?)`), nanos(now), nanos(now))
	if err != nil {
		return nil, err
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, err
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var out []*Approval
	for _, id := range ids {
		a, err := scanApproval(s.db.QueryRowContext(ctx, s.q(`UPDATE agentpdp_approvals SET state = 'expired', updated_at = ? WHERE id = ? AND ((state = 'pending' AND expires_at <= ?) OR (state = 'approved' AND grant_expires_at <= ?)) RETURNING `+columns), nanos(now), id, nanos(now), nanos(now)))
		if errors.Is(err, ErrNotFound) {
			continue // another replica expired it, or it moved on
		}
		if err != nil {
			return out, err
		}
		s.changed(ctx, id)
		out = append(out, a)
	}
	return out, nil
}

// Pending counts the approvals waiting for reviewers.
func (s *Store) Pending(ctx context.Context) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM agentpdp_approvals WHERE state = 'pending'`).Scan(&n)
	return n, err
}

// Purge deletes approvals that ended (denied, expired, consumed) before
// before, and says how many. Their story stays in the decision log.
func (s *Store) Purge(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.db.ExecContext(ctx, s.q(`DELETE FROM agentpdp_approvals WHERE state IN ('denied', 'expired', 'consumed') AND updated_at < ?`), nanos(before))
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// Watch calls fn with the id of every approval that changes (here, or on
// another replica sharing a PostgreSQL store) until the returned stop is
// called. fn must not block.
func (s *Store) Watch(fn func(id string)) (stop func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.watchers == nil {
		s.watchers = map[int]func(string){}
	}
	k := s.nextW
	s.nextW++
	s.watchers[k] = fn
	return func() {
		s.mu.Lock()
		delete(s.watchers, k)
		s.mu.Unlock()
	}
}

// changed announces a change committed outside a transaction.
func (s *Store) changed(ctx context.Context, id string) {
	if s.dialect == postgres {
		// Best effort: a lost notification costs a waiter its wake-up, not
		// correctness (waiters also poll slowly as a backstop).
		_, _ = s.db.ExecContext(ctx, `SELECT pg_notify('agentpdp_approvals', $1)`, id)
		return
	}
	s.changedLocal(id)
}

// notifyTx queues a PostgreSQL notification that is sent on commit.
func (s *Store) notifyTx(ctx context.Context, tx *sql.Tx, id string) error {
	if s.dialect != postgres {
		return nil
	}
	_, err := tx.ExecContext(ctx, `SELECT pg_notify('agentpdp_approvals', $1)`, id)
	return err
}

// changedLocal wakes this process's watchers. With PostgreSQL the
// notification comes back through LISTEN as well; waking twice is harmless.
func (s *Store) changedLocal(id string) {
	s.mu.Lock()
	fns := make([]func(string), 0, len(s.watchers))
	for _, fn := range s.watchers {
		fns = append(fns, fn)
	}
	s.mu.Unlock()
	for _, fn := range fns {
		fn(id)
	}
}

// Close releases the database.
func (s *Store) Close() error {
	if s.closeFn != nil {
		s.closeFn()
	}
	return s.db.Close()
}
