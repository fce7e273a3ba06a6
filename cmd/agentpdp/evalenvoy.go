package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/agentpdp/agentpdp/envoyauthz"
	"github.com/agentpdp/agentpdp/pdp"
)

// evalEnvoy decides one Envoy CheckRequest (proto JSON: what Envoy sends,
// and what OPA Envoy plugin and ghz fixtures hold) the way the running
// door would, from mapping and JWT verification to the answer Envoy gets.
// Nothing is logged and no listener opens.
func evalEnvoy(ctx context.Context, src []byte, name string, p *pdp.PDP, cfg envoyauthz.Config, explain bool, stdout io.Writer) error {
	req, err := parseCheckRequest(src, name)
	if err != nil {
		return err
	}
	c := &capture{p: p}
	srv, err := envoyauthz.New(cfg, c, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	defer srv.Close()
	resp, _ := srv.Check(ctx, req) // Check answers every failure as a deny
	head := ""
	if explain {
		head = pdp.Explain(c.d)
	}
	return printEnvoy(stdout, resp, explain, head, func(answer json.RawMessage) any {
		return struct {
			Input    *pdp.Input      `json:"input"`
			Decision pdp.Decision    `json:"decision"`
			Answer   json.RawMessage `json:"envoy_answer"`
		}{c.in, c.d, answer}
	})
}

// printEnvoy prints a Check answer: with explain, head then the answer in
// words; else as JSON, the document doc makes around the answer.
func printEnvoy(stdout io.Writer, resp *authv3.CheckResponse, explain bool, head string, doc func(answer json.RawMessage) any) error {
	if explain {
		var b strings.Builder
		b.WriteString(head)
		writeEnvoyAnswer(&b, resp)
		_, err := io.WriteString(stdout, b.String())
		return err
	}
	answer, err := protojson.Marshal(resp)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(doc(answer))
}

func parseCheckRequest(src []byte, name string) (*authv3.CheckRequest, error) {
	var req authv3.CheckRequest
	if err := protojson.Unmarshal(src, &req); err != nil {
		return nil, fmt.Errorf("%s: not an Envoy CheckRequest in proto JSON: %w", name, err)
	}
	return &req, nil
}

// askEnvoy sends one CheckRequest to the ext_authz door of a running
// agentpdp, as Envoy would, and prints its answer: a one-line way to try
// the server without Envoy or grpcurl. The server decides and logs.
func askEnvoy(ctx context.Context, src []byte, name, addr string, timeout time.Duration, explain bool, stdout io.Writer) error {
	req, err := parseCheckRequest(src, name)
	if err != nil {
		return err
	}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("--addr %s: %w", addr, err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// Wait for a server that is still starting (run &, then this), up to
	// the timeout.
	resp, err := authv3.NewAuthorizationClient(cc).Check(ctx, req, grpc.WaitForReady(true))
	if err != nil {
		return fmt.Errorf("asking %s: %w", addr, err)
	}
	md := resp.GetDynamicMetadata().GetFields()
	head := fmt.Sprintf("effect: %s\ndecision %s (in the server's decision log)\n",
		md["effect"].GetStringValue(), md["decision_id"].GetStringValue())
	return printEnvoy(stdout, resp, explain, head, func(answer json.RawMessage) any {
		return struct {
			Answer json.RawMessage `json:"envoy_answer"`
		}{answer}
	})
}

// capture is the PDP, remembering the input the door built and what was
// decided (or refused) for it.
type capture struct {
	p  *pdp.PDP
	in *pdp.Input
	d  pdp.Decision
}

func (c *capture) Decide(ctx context.Context, in *pdp.Input) pdp.Decision {
	c.in, c.d = in, c.p.Decide(ctx, in)
	return c.d
}

func (c *capture) Refuse(ctx context.Context, in *pdp.Input, r pdp.Reason) pdp.Decision {
	c.in, c.d = in, c.p.Refuse(ctx, in, r)
	return c.d
}

// writeEnvoyAnswer shows what Envoy would do with resp.
func writeEnvoyAnswer(b *strings.Builder, resp *authv3.CheckResponse) {
	if ok := resp.GetOkResponse(); ok != nil {
		b.WriteString("envoy: forwards the request upstream\n")
		for _, h := range ok.GetHeaders() {
			fmt.Fprintf(b, "  set    %s: %s\n", h.GetHeader().GetKey(), h.GetHeader().GetValue())
		}
		for _, h := range slices.Sorted(slices.Values(ok.GetHeadersToRemove())) {
			fmt.Fprintf(b, "  remove %s\n", h)
		}
		return
	}
	d := resp.GetDeniedResponse()
	fmt.Fprintf(b, "envoy: answers %d itself\n", d.GetStatus().GetCode())
	for _, h := range d.GetHeaders() {
		fmt.Fprintf(b, "  %s: %s\n", h.GetHeader().GetKey(), h.GetHeader().GetValue())
	}
	if body := d.GetBody(); body != "" {
		fmt.Fprintf(b, "  %s\n", strings.TrimSpace(body))
	}
}
