// Package pgtest starts a throwaway PostgreSQL server (Debian's, which the
// README's test command installs) for tests: one per test process, on a
// Unix socket in a temporary directory, no TCP, removed when Main returns.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

var (
	once    sync.Once
	baseDSN string
	dir     string
	server  *exec.Cmd
	exited  chan error // gets the server's exit
	errUp   error
)

// Main runs the package's tests and then stops the server if one started.
// Use it from TestMain: os.Exit(pgtest.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	Stop()
	return code
}

// Stop ends the server and removes its files.
func Stop() {
	if server != nil && server.Process != nil {
		_ = server.Process.Signal(syscall.SIGINT) // fast shutdown
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = server.Process.Kill()
			<-exited
		}
		server = nil
	}
	if dir != "" {
		_ = os.RemoveAll(dir)
		dir = ""
	}
}

// DSN returns the connection string of a new, empty database on the
// shared server, starting the server on first use.
func DSN(tb testing.TB) string {
	tb.Helper()
	once.Do(func() { errUp = start() })
	if errUp != nil {
		tb.Fatalf("PostgreSQL for tests: %v", errUp)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, baseDSN+" dbname=postgres")
	if err != nil {
		tb.Fatalf("PostgreSQL for tests: %v", err)
	}
	defer conn.Close(ctx)
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "t_" + hex.EncodeToString(b[:])
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("PostgreSQL for tests: %v", err)
	}
	return baseDSN + " dbname=" + name
}

// binDir finds the newest installed server's programs.
func binDir() (string, error) {
	found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	sort.Slice(found, func(i, j int) bool { return version(found[i]) > version(found[j]) })
	if len(found) > 0 {
		return filepath.Dir(found[0]), nil
	}
	if p, err := exec.LookPath("postgres"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", fmt.Errorf("no PostgreSQL server installed (Debian: apt-get install postgresql; `make deps` does it)")
}

func version(bin string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(bin))))
	return v
}

func start() error {
	bin, err := binDir()
	if err != nil {
		return err
	}
	dir, err = os.MkdirTemp("", "agentpdp-pg-")
	if err != nil {
		return err
	}
	data, sock := filepath.Join(dir, "data"), filepath.Join(dir, "sock")
	if err := os.Mkdir(sock, 0o700); err != nil {
		return err
	}
	// PostgreSQL refuses to run as root: run it as the postgres user
	// the Debian package made.
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return fmt.Errorf("running as root and there is no postgres user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		for _, p := range []string{dir, sock} {
			if err := os.Chown(p, uid, gid); err != nil {
				return err
			}
		}
	}
	run := func(name string, args ...string) *exec.Cmd {
		c := exec.Command(filepath.Join(bin, name), args...)
		c.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
		c.Dir = dir
		return c
	}
	if out, err := run("initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync").CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %v: %s", err, out)
	}
	logf, err := os.Create(filepath.Join(dir, "server.log"))
	if err != nil {
		return err
	}
	if cred != nil {
		_ = logf.Chown(int(cred.Uid), int(cred.Gid))
	}
	server = run("postgres", "-D", data, "-k", sock, "-c", "listen_addresses=", "-c", "fsync=off",
		"-c", "synchronous_commit=off", "-c", "full_page_writes=off", "-c", "max_connections=200")
	server.Stdout, server.Stderr = logf, logf
	if err := server.Start(); err != nil {
		return err
	}
	baseDSN = "host=" + sock + " user=postgres sslmode=disable"
	exited = make(chan error, 1)
	go func() { exited <- server.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn, err := pgx.Connect(ctx, baseDSN+" dbname=postgres")
		cancel()
		if err == nil {
			conn.Close(context.Background())
			return nil
		}
		select {
		case err := <-exited:
			exited <- err // for Stop
			log, _ := os.ReadFile(filepath.Join(dir, "server.log"))
			return fmt.Errorf("postgres exited: %v: %s", err, log)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("postgres not ready after 30 s: %v", err)
		}
	}
}
