package mcpproxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// MaxMessageBytes bounds one JSON-RPC message on stdio and HTTP.
const MaxMessageBytes = 4 << 20

// Command is a stdio MCP server to start, one process per session.
type Command struct {
	Path string
	Args []string
	// Env is the child's own environment (NAME=value): its credentials
	// among them, from the configuration.
	Env []string
	// Inherit names the variables of agentpdp's environment the child also
	// gets, besides DefaultInherit. Nothing else of agentpdp's environment
	// (its own secrets, say) reaches a server by accident.
	Inherit []string
	Dir     string
}

// DefaultInherit is what every stdio server gets of agentpdp's
// environment: what a program needs to start, no credentials.
var DefaultInherit = []string{"PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR", "TERM", "SHELL"}

// environ is the child's environment: the allowed inherited variables,
// then its own (which win).
func (c Command) environ() []string {
	var env []string
	for _, name := range append(append([]string{}, DefaultInherit...), c.Inherit...) {
		if v, ok := os.LookupEnv(name); ok {
			env = append(env, name+"="+v)
		}
	}
	return append(env, c.Env...)
}

// stdioUpstream is a child process speaking newline-delimited JSON-RPC.
type stdioUpstream struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	wmu   sync.Mutex
	done  chan struct{} // closed when the child has been reaped
	once  sync.Once
	err   error
}

// StartStdio starts c and delivers its messages to fn until it exits.
func StartStdio(c Command, fn ServerMessage, log *slog.Logger) (Upstream, error) {
	cmd := exec.Command(c.Path, c.Args...)
	cmd.Env = c.environ()
	cmd.Dir = c.Dir
	// Its own process group, so stopping it stops what it started too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", c.Path, err)
	}
	u := &stdioUpstream{cmd: cmd, stdin: stdin, done: make(chan struct{})}
	log = log.With("upstream_pid", cmd.Process.Pid)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 4096), 64<<10)
		for sc.Scan() {
			log.Info("upstream stderr", "line", sc.Text())
		}
	}()
	go func() {
		err := readLines(stdout, func(line []byte) { fn(line, "", nil) })
		werr := cmd.Wait()
		close(u.done)
		if err == nil {
			err = werr
		}
		if err == nil {
			err = errors.New("the server process exited")
		} else {
			err = fmt.Errorf("the server process ended: %w", err)
		}
		u.err = err
		fn(nil, "", err)
	}()
	return u, nil
}

// readLines calls fn with each non-empty line of r (without the newline).
func readLines(r io.Reader, fn func([]byte)) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var buf []byte
	for {
		chunk, err := br.ReadSlice('\n')
		buf = append(buf, chunk...)
		if errors.Is(err, bufio.ErrBufferFull) {
			if len(buf) > MaxMessageBytes {
				return fmt.Errorf("a message is larger than %d bytes", MaxMessageBytes)
			}
			continue
		}
		if line := bytes.TrimSpace(buf); len(line) > 0 {
			fn(bytes.Clone(line))
		}
		buf = buf[:0]
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

func (u *stdioUpstream) Send(_ context.Context, msg []byte, _ string) error {
	if bytes.IndexByte(msg, '\n') >= 0 {
		// The message is forwarded as decided; a raw newline inside it
		// would split it into two on the server's side.
		msg = bytes.ReplaceAll(bytes.ReplaceAll(msg, []byte("\r\n"), []byte(" ")), []byte("\n"), []byte(" "))
	}
	u.wmu.Lock()
	defer u.wmu.Unlock()
	select {
	case <-u.done:
		return u.err
	default:
	}
	if _, err := u.stdin.Write(append(msg, '\n')); err != nil {
		return err
	}
	return nil
}

// Close stops the child: stdin closed (the polite way, as MCP's stdio
// transport says), then SIGTERM to its group, then SIGKILL; it is always
// reaped.
func (u *stdioUpstream) Close() error {
	u.once.Do(func() {
		u.wmu.Lock()
		u.stdin.Close()
		u.wmu.Unlock()
		pgid := -u.cmd.Process.Pid
		for _, step := range []struct {
			sig  syscall.Signal
			wait time.Duration
		}{{0, 2 * time.Second}, {syscall.SIGTERM, 2 * time.Second}, {syscall.SIGKILL, 5 * time.Second}} {
			if step.sig != 0 {
				_ = syscall.Kill(pgid, step.sig)
			}
			select {
			case <-u.done:
				_ = syscall.Kill(pgid, syscall.SIGKILL) // anything it left behind
				return
			case <-time.After(step.wait):
			}
		}
	})
	return nil
}
