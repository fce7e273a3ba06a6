package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/agentpdp/agentpdp/envoyauthz"
)

// TestDoorServeFailureExits: when a running door's Serve fails, agentpdp
// stops its other components and exits non-zero within a second, naming
// the door, instead of serving on half up. Serve is made to fail from
// outside by shutting down the door's listening socket (through a copy of
// its descriptor), after which accept fails with EINVAL for good.
func TestDoorServeFailureExits(t *testing.T) {
	p := startAgentpdp(t, fmt.Sprintf("data_dir: %s\nadmin:\n  addr: 127.0.0.1:0\nenvoy:\n  addr: 127.0.0.1:0\n", t.TempDir()))
	addr := p.doorAddr(t, "envoy")
	adminAddr := p.listenerAddr(t, "admin")

	// Both serve before the door is broken.
	cc := dialEnvoy(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: envoyauthz.ServiceName}, grpc.WaitForReady(true))
	must(t, err)
	httpGet(t, "http://"+adminAddr+"/healthz")

	_, port, err := net.SplitHostPort(addr)
	must(t, err)
	lfd := listenerFD(t, p.cmd.Process.Pid, port)
	defer unix.Close(lfd)
	must(t, unix.Shutdown(lfd, unix.SHUT_RD))

	if code := p.waitExit(t, time.Second); code == 0 {
		t.Errorf("agentpdp exited 0 after its Envoy door failed:\n%s", p.log())
	}
	if want := "agentpdp: envoy: accept"; !strings.Contains(p.log(), want) {
		t.Errorf("stderr does not say %q:\n%s", want, p.log())
	}
}

// listenerFD returns a copy of process pid's TCP listening socket on port,
// skipping the test where the kernel will not hand one over.
func listenerFD(t *testing.T, pid int, port string) int {
	t.Helper()
	pidfd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) {
		t.Fatalf("pidfd_open (the test needs Linux 5.6+ and ptrace rights over its child): %v", err)
	}
	must(t, err)
	defer unix.Close(pidfd)
	want, err := strconv.Atoi(port)
	must(t, err)
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	must(t, err)
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		fd, err := unix.PidfdGetfd(pidfd, n, 0)
		if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) {
			t.Fatalf("pidfd_getfd (the test needs Linux 5.6+ and ptrace rights over its child): %v", err)
		}
		if err != nil {
			continue // closed meanwhile
		}
		// Accepted connections share the port; only the listener accepts.
		sa, err := unix.Getsockname(fd)
		if in4, ok := sa.(*unix.SockaddrInet4); ok && err == nil && in4.Port == want {
			if acc, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); err == nil && acc == 1 {
				return fd
			}
		}
		unix.Close(fd)
	}
	t.Fatalf("no listening socket on port %s in process %d", port, pid)
	return -1
}
