//go:build !unix

package mcpproxy

import "net"

// stillOpen cannot peek here without blocking: an idle connection is not
// reused.
func stillOpen(net.Conn) bool { return false }
