package envoyauthz

import (
	"context"
	"path/filepath"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/decisionlog"
	"github.com/agentpdp/agentpdp/policies"
)

// examplePDP is the real PDP with the built-in example policies and a file
// decision log, as `agentpdp run` serves them (rate counting off, so a
// benchmark does not turn into rate-limit denials).
func examplePDP(b *testing.B) *pdp.PDP {
	b.Helper()
	set, err := pdp.LoadFS(context.Background(), policies.FS, "builtin")
	if err != nil {
		b.Fatal(err)
	}
	sink, err := decisionlog.NewFileSink(filepath.Join(b.TempDir(), "decisions.log"), 1<<30, 1)
	if err != nil {
		b.Fatal(err)
	}
	dl, err := decisionlog.New(decisionlog.Options{Logger: quietLog()}, sink)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { dl.Close() })
	return pdp.New(set, pdp.Options{Log: dl, Redact: pdp.DefaultRedact, Logger: quietLog()})
}

// plannerCall is allowed by the example policies (planner may act alone).
func plannerCall() *authv3.CheckRequest {
	return checkReq("POST", "/mcp", principal("spiffe://example.org/agent/planner"), ext("server", "github"),
		jsonBody(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"create_issue","arguments":{"repo":"example/shop","title":"Flaky checkout test","labels":["ci"]}}}`))
}

// BenchmarkCheckPDP is one Check in-process with the real PDP: the door's
// share is the difference to BenchmarkCheck/mcp-allow.
func BenchmarkCheckPDP(b *testing.B) {
	s := newServer(b, Config{}, examplePDP(b))
	ctx := context.Background()
	if resp, _ := s.Check(ctx, plannerCall()); resp.GetOkResponse() == nil {
		b.Fatalf("fixture not allowed: %v", resp)
	}
	b.ReportAllocs()
	defer reportCPU(b)()
	for b.Loop() {
		s.Check(ctx, plannerCall())
	}
}

// BenchmarkCheckGRPC adds gRPC over loopback with 16 concurrent callers,
// client included, like ghz at -c 16 but in one process.
func BenchmarkCheckGRPC(b *testing.B) {
	s := newServer(b, Config{}, examplePDP(b))
	lis, err := Listen("127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, lis) }()
	defer func() { cancel(); <-done }()
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Close()
	client := authv3.NewAuthorizationClient(cc)
	req := plannerCall()
	if resp, err := client.Check(ctx, req); err != nil || resp.GetOkResponse() == nil {
		b.Fatalf("fixture not allowed: %v %v", resp, err)
	}
	b.SetParallelism(8) // 16 callers on 2 cores
	b.ReportAllocs()
	defer reportCPU(b)()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := client.Check(ctx, req); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
