package approvals

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	_ "modernc.org/sqlite"             // database/sql driver "sqlite": pure Go, the binary stays static
)

// OpenSQLite opens (creating it and its directory if needed) the SQLite
// store at path and brings its schema up to date. One process uses it:
// writes go through one connection, so they are serialized here rather
// than retried on SQLITE_BUSY.
func OpenSQLite(ctx context.Context, path string) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("approvals store: %w", err)
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(5000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("approvals store %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	s := &Store{db: db, dialect: sqlite}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("approvals store %s: %w", path, err)
	}
	return s, nil
}

// OpenPostgres connects to PostgreSQL at dsn (a URL or key=value string),
// brings the schema up to date (one replica at a time) and listens for
// changes other replicas make, so that their approvals wake this one's
// waiting calls at once.
func OpenPostgres(ctx context.Context, dsn string, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.Default()
	}
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, fmt.Errorf("approvals store: %w", err)
	}
	// As many idle as open: database/sql keeps 2 by default, and a burst
	// of held calls would then pay a new connection each.
	db.SetMaxOpenConns(16)
	db.SetMaxIdleConns(16)
	s := &Store{db: db, dialect: postgres}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("approvals store (postgres): %w", err)
	}
	lctx, cancel := context.WithCancel(context.Background())
	ready := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.listen(lctx, dsn, logger, ready)
	}()
	select {
	case err := <-ready:
		if err != nil {
			cancel()
			<-done
			db.Close()
			return nil, fmt.Errorf("approvals store (postgres): listen: %w", err)
		}
	case <-ctx.Done():
		cancel()
		<-done
		db.Close()
		return nil, ctx.Err()
	}
	s.closeFn = func() { cancel(); <-done }
	return s, nil
}

// listen keeps a LISTEN connection open until ctx ends, reconnecting after
// a failure. ready gets the first connection's result.
func (s *Store) listen(ctx context.Context, dsn string, logger *slog.Logger, ready chan<- error) {
	backoff := 100 * time.Millisecond
	first := true
	for ctx.Err() == nil {
		conn, err := pgx.Connect(ctx, dsn)
		if err == nil {
			_, err = conn.Exec(ctx, "LISTEN agentpdp_approvals")
		}
		if first {
			ready <- err
			first = false
			if err != nil {
				if conn != nil {
					conn.Close(context.Background())
				}
				return
			}
		}
		if err == nil {
			backoff = 100 * time.Millisecond
			// Changes made while we were not listening: wake everyone
			// to look again.
			s.changedLocal("")
			for {
				n, werr := conn.WaitForNotification(ctx)
				if werr != nil {
					err = werr
					break
				}
				s.changedLocal(n.Payload)
			}
		}
		if conn != nil {
			conn.Close(context.Background())
		}
		if ctx.Err() != nil {
			return
		}
		logger.Warn("approvals: PostgreSQL notifications lost; reconnecting", "error", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}
