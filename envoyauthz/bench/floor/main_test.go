package main

import (
	"context"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// The floor must answer OK (code 0) to anything, or run.sh's floor rows
// would time errors.
func TestFloorAnswersOK(t *testing.T) {
	addrc := make(chan string, 1)
	errc := make(chan error, 1)
	go func() { errc <- serve("127.0.0.1:0", func(a string) { addrc <- a }) }()
	var addr string
	select {
	case addr = <-addrc:
	case err := <-errc:
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	resp, err := authv3.NewAuthorizationClient(conn).Check(context.Background(), &authv3.CheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetStatus() == nil || resp.GetStatus().GetCode() != 0 {
		t.Fatalf("status = %v, want code 0", resp.GetStatus())
	}
}
