package approvals

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/agentpdp/agentpdp/pdp/identity"
)

// Authenticator says who sent a request to the reviewers' API: an error
// when nobody valid did.
type Authenticator interface {
	Reviewer(r *http.Request) (Reviewer, error)
}

// StaticReviewer is a reviewer known by a token whose SHA-256 is in the
// config (the token itself is never stored).
type StaticReviewer struct {
	ID     string   `yaml:"id" json:"id"`
	Groups []string `yaml:"groups" json:"groups,omitempty"`
	// TokenSHA256 is the hex SHA-256 of the bearer token.
	TokenSHA256 string `yaml:"token_sha256" json:"-"`
}

// StaticTokens authenticates bearer tokens against hashed static tokens.
type StaticTokens []StaticReviewer

var errNoCredentials = errors.New("no bearer token")

// Reviewer implements Authenticator. Every entry is compared (in constant
// time), so the answer's timing does not tell which one matched.
func (st StaticTokens) Reviewer(r *http.Request) (Reviewer, error) {
	tok, ok := identity.BearerCredentials(r.Header.Get("Authorization"))
	if !ok {
		return Reviewer{}, errNoCredentials
	}
	got := HashToken(tok)
	var found *StaticReviewer
	for i := range st {
		if subtle.ConstantTimeCompare([]byte(strings.ToLower(st[i].TokenSHA256)), []byte(got)) == 1 && found == nil {
			found = &st[i]
		}
	}
	if found == nil {
		return Reviewer{}, errors.New("unknown token")
	}
	return Reviewer{ID: found.ID, Groups: found.Groups}, nil
}

// HashToken is what goes in token_sha256 for a token.
func HashToken(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:])
}

// AnyOf tries each authenticator in turn.
type AnyOf []Authenticator

// Reviewer implements Authenticator.
func (a AnyOf) Reviewer(r *http.Request) (Reviewer, error) {
	err := errNoCredentials
	for _, x := range a {
		rv, e := x.Reviewer(r)
		if e == nil {
			return rv, nil
		}
		if !errors.Is(e, errNoCredentials) {
			err = e
		}
	}
	return Reviewer{}, err
}

// API is the reviewers' REST API:
//
//	GET  /v1/approvals?state=&agent=&user=&limit=   list, newest first
//	GET  /v1/approvals/{id}                          one approval
//	POST /v1/approvals/{id}/approve  {"comment","digest"}
//	POST /v1/approvals/{id}/deny     {"comment","digest"}
//	GET  /v1/approvals/{id}/status                   state only, no sign-in
//
// All but status need an authenticated reviewer. Errors are
// application/problem+json.
type API struct {
	Service *Service
	Auth    Authenticator
	Logger  *slog.Logger
	// Page, when set, serves everything else on the listener (the
	// reviewers' web page).
	Page http.Handler
}

// Handler returns the API's routes.
func (a *API) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/approvals", a.authed(a.list))
	mux.HandleFunc("GET /v1/approvals/{id}", a.authed(a.get))
	mux.HandleFunc("POST /v1/approvals/{id}/approve", a.authed(a.review(VerdictApprove)))
	mux.HandleFunc("POST /v1/approvals/{id}/deny", a.authed(a.review(VerdictDeny)))
	mux.HandleFunc("GET /v1/approvals/{id}/status", a.status)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	if a.Page != nil {
		mux.Handle("/", a.Page)
	}
	return mux
}

func (a *API) logger() *slog.Logger {
	if a.Logger != nil {
		return a.Logger
	}
	return slog.Default()
}

func (a *API) authed(h func(http.ResponseWriter, *http.Request, Reviewer)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rv, err := a.Auth.Reviewer(r)
		if err != nil || rv.ID == "" {
			a.logger().Warn("approvals API: unauthenticated request", "path", r.URL.Path, "remote", r.RemoteAddr, "error", err)
			w.Header().Set("WWW-Authenticate", `Bearer realm="agentpdp approvals"`)
			problem(w, http.StatusUnauthorized, "sign in as a reviewer", "a valid bearer token is required")
			return
		}
		h(w, r, rv)
	}
}

func (a *API) list(w http.ResponseWriter, r *http.Request, _ Reviewer) {
	q := r.URL.Query()
	f := Filter{State: State(q.Get("state")), Agent: q.Get("agent"), User: q.Get("user")}
	switch f.State {
	case "", Pending, Approved, Denied, Expired, Consumed:
	default:
		problem(w, http.StatusBadRequest, "bad filter", fmt.Sprintf("state %q is not pending, approved, denied, expired or consumed", f.State))
		return
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n <= 0 {
			problem(w, http.StatusBadRequest, "bad filter", "limit must be a positive number")
			return
		}
		f.Limit = n
	}
	list, err := a.Service.List(r.Context(), f)
	if err != nil {
		a.storeError(w, err)
		return
	}
	if list == nil {
		list = []*Approval{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"approvals": list})
}

func (a *API) get(w http.ResponseWriter, r *http.Request, _ Reviewer) {
	ap, err := a.Service.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		a.storeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, ap)
}

// status tells a waiting client where its approval is, and nothing else.
func (a *API) status(w http.ResponseWriter, r *http.Request) {
	ap, err := a.Service.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		a.storeError(w, err)
		return
	}
	out := map[string]any{"approval_id": ap.ID, "state": ap.State, "expires_at": ap.ExpiresAt}
	if ap.State == Approved {
		out["grant_expires_at"] = ap.GrantExpiresAt
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *API) review(verdict string) func(http.ResponseWriter, *http.Request, Reviewer) {
	return func(w http.ResponseWriter, r *http.Request, rv Reviewer) {
		var body struct {
			Comment string `json:"comment"`
			Digest  string `json:"digest"`
		}
		if r.ContentLength != 0 {
			dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&body); err != nil && !errors.Is(err, io.EOF) {
				problem(w, http.StatusBadRequest, "bad request body", err.Error())
				return
			}
		}
		ap, err := a.Service.Review(r.Context(), r.PathValue("id"), rv, ReviewRequest{Verdict: verdict, Comment: body.Comment, Digest: body.Digest})
		if err != nil {
			reviewProblem(w, a.logger(), "approvals API: store", err)
			return
		}
		writeJSON(w, http.StatusOK, ap)
	}
}

func (a *API) storeError(w http.ResponseWriter, err error) {
	storeProblem(w, a.logger(), "approvals API: store", err)
}

// storeProblem answers a store error: 404 for an unknown approval, else
// 503 (logged as what).
func storeProblem(w http.ResponseWriter, log *slog.Logger, what string, err error) {
	if errors.Is(err, ErrNotFound) {
		problem(w, http.StatusNotFound, "no such approval", "")
		return
	}
	log.Error(what, "error", err)
	problem(w, http.StatusServiceUnavailable, "the approvals store failed", "")
}

// reviewProblem answers a review Service.Review did not take, for the API
// and the page alike: 409 once the approval is decided or expired, 403 a
// refusal with its reason, else as storeProblem.
func reviewProblem(w http.ResponseWriter, log *slog.Logger, what string, err error) {
	switch {
	case errors.Is(err, ErrNotPending):
		problem(w, http.StatusConflict, "the approval cannot be reviewed now", refusalReason(err))
	case errors.Is(err, ErrRefused):
		problem(w, http.StatusForbidden, "review refused", refusalReason(err))
	default:
		storeProblem(w, log, what, err)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func problem(w http.ResponseWriter, status int, title, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"title": title, "status": status, "detail": detail})
}

// StatusURL is where a held client follows approval id, on the API at
// base ("" when base is).
func StatusURL(base, id string) string {
	if base == "" {
		return ""
	}
	return strings.TrimSuffix(base, "/") + "/v1/approvals/" + url.PathEscape(id) + "/status"
}

// Server serves the API on its own listener.
func NewServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
}
