// Command floor is an ext_authz server that answers every Check with OK
// and does nothing else: run.sh measures it beside agentpdp, under the
// same ghz and the same number of Ps, so the machine's own cost of gRPC is
// printed next to agentpdp's numbers (absolute goals depend on the host).
//
//	floor [-addr 127.0.0.1:0]   # prints "listening ADDR" once serving
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/reflection"
)

type server struct {
	authv3.UnimplementedAuthorizationServer
}

func (server) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return &authv3.CheckResponse{Status: &rpcstatus.Status{}}, nil
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	flag.Parse()
	if err := serve(*addr, func(a string) { fmt.Println("listening", a) }); err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
}

// serve listens on addr, reports the bound address, and serves until the
// listener fails.
func serve(addr string, ready func(string)) error {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, server{})
	reflection.Register(gs) // ghz finds the method the way it does on agentpdp
	ready(lis.Addr().String())
	return gs.Serve(lis)
}
