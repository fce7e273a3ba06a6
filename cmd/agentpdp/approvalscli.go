package main

import (
	"bufio"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/agentpdp/agentpdp/approvals"
)

const approvalsUsage = `usage: agentpdp approvals list [--state S] [--agent A] [--user U] [--json]
       agentpdp approvals show ID [--json]
       agentpdp approvals approve ID [--comment TEXT]
       agentpdp approvals deny ID [--comment TEXT]
       agentpdp approvals hash-token [--new | TOKEN]

The reviewer's token (a static reviewer token, or a JWT from the
approvals.oidc provider) comes from AGENTPDP_REVIEWER_TOKEN or --token-file
(never a flag: command lines are visible to other users). The API is
--server, AGENTPDP_APPROVALS_URL, or http://127.0.0.1:9494.
`

// cmdApprovals is the reviewers' CLI over the approvals API.
func cmdApprovals(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: approvals: name a subcommand\n%s", errUsage, approvalsUsage)
	}
	sub, args := args[0], args[1:]
	fs := newFlags("approvals " + sub)
	server := fs.String("server", "", "the approvals API (default $AGENTPDP_APPROVALS_URL or http://127.0.0.1:9494)")
	tokenFile := fs.String("token-file", "", "a file holding the reviewer's bearer token (default $AGENTPDP_REVIEWER_TOKEN)")
	asJSON := fs.Bool("json", false, "print the API's JSON")
	var state, agent, user, comment *string
	var newToken *bool
	switch sub {
	case "list":
		state = fs.String("state", "pending", `pending, approved, denied, expired, consumed, or "" for all`)
		agent = fs.String("agent", "", "only this agent's")
		user = fs.String("user", "", "only those made for this person")
	case "approve", "deny":
		comment = fs.String("comment", "", "why (kept with the review and in the decision log)")
	case "show":
	case "hash-token":
		newToken = fs.Bool("new", false, "make a new random token and print it with its hash")
	default:
		return fmt.Errorf("%w: approvals: unknown subcommand %q\n%s", errUsage, sub, approvalsUsage)
	}
	// Flags may follow the id: parse, take the id, parse the rest.
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	rest := fs.Args()
	var id string
	if len(rest) > 0 && sub != "list" {
		id, rest = rest[0], rest[1:]
		if err := parseFlags(fs, rest); err != nil {
			return err
		}
		rest = fs.Args()
	}
	if sub == "hash-token" {
		return hashToken(id, *newToken, stdin, stdout)
	}
	if len(rest) > 0 {
		return fmt.Errorf("%w: approvals %s: unexpected %q\n%s", errUsage, sub, rest[0], approvalsUsage)
	}
	if sub != "list" && id == "" {
		return fmt.Errorf("%w: approvals %s: name the approval id\n%s", errUsage, sub, approvalsUsage)
	}
	c, err := newReviewerClient(*server, *tokenFile)
	if err != nil {
		return err
	}
	switch sub {
	case "list":
		q := url.Values{}
		for k, v := range map[string]string{"state": *state, "agent": *agent, "user": *user} {
			if v != "" {
				q.Set(k, v)
			}
		}
		var out struct {
			Approvals []approvals.Approval `json:"approvals"`
		}
		raw, err := c.do(ctx, "GET", "/v1/approvals?"+q.Encode(), nil, &out)
		if err != nil {
			return err
		}
		if *asJSON {
			_, err = stdout.Write(raw)
			return err
		}
		printList(stdout, out.Approvals)
		return nil
	case "show":
		var a approvals.Approval
		raw, err := c.do(ctx, "GET", "/v1/approvals/"+url.PathEscape(id), nil, &a)
		if err != nil {
			return err
		}
		if *asJSON {
			_, err = stdout.Write(raw)
			return err
		}
		printApproval(stdout, &a)
		return nil
	default: // approve, deny
		// Bind the verdict to the call as shown now: if the approval
		// were somehow replaced, the digest no longer matches and the
		// API refuses.
		var a approvals.Approval
		if _, err := c.do(ctx, "GET", "/v1/approvals/"+url.PathEscape(id), nil, &a); err != nil {
			return err
		}
		body := map[string]string{"comment": *comment, "digest": a.Digest}
		if _, err := c.do(ctx, "POST", "/v1/approvals/"+url.PathEscape(id)+"/"+sub, body, &a); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: %s (%d of %d approvals)\n", a.ID, a.State, a.Approvals(), a.Min)
		return nil
	}
}

// hashToken prints token_sha256 for a token (from the argument or stdin),
// or a new random token and its hash.
func hashToken(tok string, makeNew bool, stdin io.Reader, stdout io.Writer) error {
	if makeNew {
		var b [32]byte
		_, _ = rand.Read(b[:])
		tok = base64.RawURLEncoding.EncodeToString(b[:])
		fmt.Fprintf(stdout, "token:        %s\ntoken_sha256: %s\n", tok, approvals.HashToken(tok))
		return nil
	}
	if tok == "" || tok == "-" {
		line, err := bufio.NewReader(stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		tok = strings.TrimSpace(line)
	}
	if tok == "" {
		return fmt.Errorf("%w: approvals hash-token: give a token (argument or stdin), or --new", errUsage)
	}
	fmt.Fprintln(stdout, approvals.HashToken(tok))
	return nil
}

type reviewerClient struct {
	base, token string
	http        *http.Client
}

func newReviewerClient(server, tokenFile string) (*reviewerClient, error) {
	base := cmp.Or(server, os.Getenv("AGENTPDP_APPROVALS_URL"), "http://"+defaultApprovalsAddr)
	tok := os.Getenv("AGENTPDP_REVIEWER_TOKEN")
	if tokenFile != "" {
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return nil, err
		}
		tok = strings.TrimSpace(string(b))
	}
	if tok == "" {
		return nil, errors.New("approvals: no reviewer token: set AGENTPDP_REVIEWER_TOKEN or --token-file")
	}
	return &reviewerClient{base: apiURL(base), token: tok, http: &http.Client{Timeout: 30 * time.Second}}, nil
}

// do calls the API; a problem answer becomes an error naming its detail.
func (c *reviewerClient) do(ctx context.Context, method, path string, body, out any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = strings.NewReader(string(b))
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("approvals API: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		var p struct{ Title, Detail string }
		_ = json.Unmarshal(raw, &p)
		msg := cmp.Or(p.Title, resp.Status)
		if p.Detail != "" {
			msg += ": " + p.Detail
		}
		return nil, fmt.Errorf("approvals API (%d): %s", resp.StatusCode, msg)
	}
	return raw, json.Unmarshal(raw, out)
}

func printList(w io.Writer, list []approvals.Approval) {
	if len(list) == 0 {
		fmt.Fprintln(w, "no approvals")
		return
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tAGENT\tUSER\tACTION\tREVIEWS\tEXPIRES")
	for i := range list {
		a := &list[i]
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d/%d\t%s\n", a.ID, a.State, a.Agent, dash(a.User), actionLine(a.Action),
			a.Approvals(), a.Min, a.ExpiresAt.Local().Format(time.DateTime))
	}
	tw.Flush()
}

func dash(s string) string { return cmp.Or(s, "-") }

// actionLine is the call in a few words: tools/call github/merge, GET host/path.
func actionLine(act map[string]any) string {
	str := func(k string) string { s, _ := act[k].(string); return s }
	if t := cmp.Or(str("tool"), str("resource")); t != "" {
		return strings.TrimPrefix(str("kind"), "mcp.") + " " + cmp.Or(str("server"), "?") + "/" + t
	}
	if m := str("method"); m != "" {
		return m + " " + str("host") + str("path")
	}
	return strings.TrimPrefix(str("kind"), "mcp.")
}

func printApproval(w io.Writer, a *approvals.Approval) {
	fmt.Fprintf(w, "approval  %s\nstate     %s\nagent     %s\nfor       %s\n", a.ID, a.State, a.Agent, dash(a.User))
	if len(a.DelegationChain) > 0 {
		fmt.Fprintf(w, "chain     %s\n", strings.Join(a.DelegationChain, " -> "))
	}
	fmt.Fprintf(w, "action    %s\n", actionLine(a.Action))
	if args, ok := a.Action["arguments"].(map[string]any); ok && len(args) > 0 {
		keys := make([]string, 0, len(args))
		for k := range args {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			v, _ := json.Marshal(args[k])
			fmt.Fprintf(w, "          %s: %s\n", k, v)
		}
	}
	fmt.Fprintf(w, "digest    %s\nneeds     %d of %s\n", a.Digest, a.Min, strings.Join(a.Approvers, ", "))
	for _, r := range a.Reasons {
		fmt.Fprintf(w, "rule      %s: %s\n", r.Rule, r.Message)
	}
	for _, r := range a.Reviews {
		fmt.Fprintf(w, "review    %s %s at %s", r.By, r.Verdict, r.At.Local().Format(time.DateTime))
		if r.Comment != "" {
			fmt.Fprintf(w, ": %s", r.Comment)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "requested %s\nexpires   %s\n", a.RequestedAt.Local().Format(time.DateTime), a.ExpiresAt.Local().Format(time.DateTime))
	if !a.GrantExpiresAt.IsZero() {
		fmt.Fprintf(w, "grant until %s\n", a.GrantExpiresAt.Local().Format(time.DateTime))
	}
}
