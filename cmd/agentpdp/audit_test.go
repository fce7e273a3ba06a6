package main

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentpdp/agentpdp/pdp/decisionlog"
)

// writeLog writes n records through a log with one checkpoint, at Close,
// signed by key (nil: unsigned), rotating every few records when rotate.
func writeLog(t *testing.T, path string, key ed25519.PrivateKey, n int, rotate bool) {
	t.Helper()
	var maxBytes int64
	if rotate {
		maxBytes = 2500 // three records of about 700 bytes
	}
	fs, err := decisionlog.NewFileSink(path, maxBytes, 0)
	if err != nil {
		t.Fatal(err)
	}
	l, err := decisionlog.New(decisionlog.Options{Checkpoints: &decisionlog.CheckpointOptions{File: path + ".checkpoints", Key: key}}, fs)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		err := l.Append(&decisionlog.Record{DecisionID: fmt.Sprintf("d%d", i), Effect: "allow",
			Input: json.RawMessage(`{"pad":"` + strings.Repeat("x", 600) + `"}`)})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

func cutLastLines(t *testing.T, path string, n int) {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.SplitAfter(src, []byte("\n"))
	lines = lines[:len(lines)-1] // the empty piece after the last newline
	if err := os.WriteFile(path, bytes.Join(lines[:len(lines)-n], nil), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestAuditKeygenAndVerifyCheckpoints(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "keys", "checkpoint.pem")
	os.MkdirAll(filepath.Dir(keyFile), 0o700)
	code, out, errs := run(t, "", "audit", "keygen", "--out", keyFile)
	if code != 0 || !strings.Contains(out, "key_id ed25519:") || !strings.Contains(out, "-----BEGIN PUBLIC KEY-----") {
		t.Fatalf("keygen: exit %d\n%s%s", code, out, errs)
	}
	if st, err := os.Stat(keyFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("private key: %v %v", st.Mode(), err)
	}
	if code, _, errs := run(t, "", "audit", "keygen", "--out", keyFile); code != 1 || !strings.Contains(errs, "file exists") {
		t.Errorf("keygen over an existing key: exit %d %s", code, errs)
	}
	key, err := decisionlog.LoadPrivateKey(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	pub := keyFile + ".pub"
	if p, err := decisionlog.LoadPublicKey(pub); err != nil || !p.Equal(key.Public()) {
		t.Fatalf("public key: %v", err)
	}

	logFile := filepath.Join(dir, "data", "decisions.log")
	cps := logFile + ".checkpoints"
	writeLog(t, logFile, key, 5, false)
	verify := func(args ...string) (int, string, string) {
		return run(t, "", append([]string{"audit", "verify"}, args...)...)
	}
	code, out, errs = verify("--log", logFile, "--checkpoints", cps, "--public-key", pub)
	if code != 0 || !strings.Contains(out, "1 checkpoint signature(s) verified") || !strings.Contains(out, "ok: 5 records") {
		t.Fatalf("intact: exit %d\n%s%s", code, out, errs)
	}
	head := fmt.Sprintf("5:%s", lastHash(t, logFile))

	// A forged checkpoint (its time moved) fails with the key, and is only
	// a note without it: --public-key is what makes them evidence.
	src, _ := os.ReadFile(cps)
	forged := filepath.Join(dir, "forged.checkpoints")
	os.WriteFile(forged, bytes.Replace(src, []byte(`"time":"20`), []byte(`"time":"19`), 1), 0o600)
	if code, _, errs := verify("--log", logFile, "--checkpoints", forged, "--public-key", pub); code != 1 || !strings.Contains(errs, forged+":1: checkpoint seq 5: signature does not verify") {
		t.Errorf("forged, with the key: exit %d %s", code, errs)
	}
	if code, out, _ := verify("--log", logFile, "--checkpoints", forged); code != 0 || !strings.Contains(out, "signatures not checked") {
		t.Errorf("forged, without a key: exit %d\n%s", code, out)
	}

	// The last record cut: caught with checkpoints (file or --head), not
	// without (the README says so).
	cutLastLines(t, logFile, 1)
	want := cps + ":1: the log ends at seq 4 (" + logFile + ":4), but this checkpoint says seq 5: 1 record missing at the tail (seq 5)"
	if code, out, errs := verify("--log", logFile, "--checkpoints", cps, "--public-key", pub); code != 1 || errs != "agentpdp: "+want+"\n" || !strings.Contains(out, "error: "+want) {
		t.Errorf("cut tail: exit %d\nstdout %s\nstderr %q\nwant %q", code, out, errs, want)
	}
	if code, _, errs := verify("--head", head, logFile); code != 1 || !strings.Contains(errs, "1 record missing at the tail (seq 5)") {
		t.Errorf("cut tail, --head: exit %d %s", code, errs)
	}
	if code, out, _ := verify(logFile); code != 0 || !strings.Contains(out, "note: no checkpoints given") {
		t.Errorf("cut tail, no checkpoints: exit %d\n%s", code, out)
	}

	// The first records cut.
	src, _ = os.ReadFile(logFile)
	os.WriteFile(logFile, src[bytes.IndexByte(src, '\n')+1:], 0o600)
	code, _, errs = verify("--head", "4:"+lastHash(t, logFile), "--checkpoints", cps, logFile)
	if code != 1 || !strings.Contains(errs, logFile+":1: the chain starts at seq 2, but no rotated file ended at seq 1") ||
		!strings.Contains(errs, "1 record missing at the head (seq 1)") || !strings.Contains(errs, "and 1 more problem(s)") {
		t.Errorf("cut head: exit %d %s", code, errs)
	}
}

func lastHash(t *testing.T, path string) string {
	t.Helper()
	_, h, err := decisionlog.LastState(path)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestAuditVerifyRotatedFilesAnyOrder(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "decisions.log")
	writeLog(t, logFile, nil, 10, true)
	files := decisionlog.Files(logFile)
	if len(files) < 3 {
		t.Fatalf("files: %v", files)
	}
	slices.Reverse(files)
	code, out, errs := run(t, "", append([]string{"audit", "verify", "--checkpoints", logFile + ".checkpoints"}, files...)...)
	if code != 0 || !strings.Contains(out, "ok: 10 records in "+fmt.Sprint(len(files))+" file(s)") {
		t.Fatalf("newest first: exit %d\n%s%s", code, out, errs)
	}
	// A middle file missing is named with the seqs it held.
	src, _ := os.ReadFile(files[1])
	var first struct{ Seq uint64 }
	json.Unmarshal(src[:bytes.IndexByte(src, '\n')], &first)
	n := uint64(bytes.Count(src, []byte("\n")))
	want := fmt.Sprintf("%s:1: this file starts at seq %d, but the one before (%s) ends at seq %d: %d records missing (seq %d..%d)",
		files[0], first.Seq+n, files[2], first.Seq-1, n, first.Seq, first.Seq+n-1)
	code, _, errs = run(t, "", "audit", "verify", files[0], files[2])
	if code != 1 || !strings.Contains(errs, want) {
		t.Errorf("middle missing: exit %d %s\nwant %s", code, errs, want)
	}
}

func TestAuditUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"audit", "keygen"},
		{"audit", "keygen", "--out", "x", "extra"},
		{"audit", "verify", "--public-key", "k.pub", "a.log"},
		{"audit", "verify", "--head", "nonsense", "a.log"},
		{"audit", "frobnicate"},
	} {
		if code, _, errs := run(t, "", args...); code != 2 {
			t.Errorf("%v: exit %d, want 2 (%s)", args, code, errs)
		}
	}
}

func TestCheckpointConfig(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "agentpdp.yaml")
	os.WriteFile(p, []byte("data_dir: data\ndecision_log:\n  checkpoint_every: 5\n  checkpoint_interval: 1s\n  checkpoint_key_file: keys/ck.pem\n"), 0o644)
	cfg, err := loadConfig(p, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.finish(); err != nil {
		t.Fatal(err)
	}
	l := cfg.DecisionLog
	if l.CheckpointEvery != 5 || l.CheckpointInterval != time.Second || l.CheckpointKeyFile != filepath.Join(dir, "keys", "ck.pem") ||
		l.CheckpointFile != filepath.Join(dir, "data", "decisions.log.checkpoints") {
		t.Fatalf("%+v", l)
	}
	if d := defaultConfig().DecisionLog; d.CheckpointEvery != 1000 || d.CheckpointInterval != 10*time.Second {
		t.Errorf("defaults: %+v", d)
	}
	os.WriteFile(p, []byte("decision_log:\n  checkpoint_evry: 5\n"), 0o644)
	if _, err := loadConfig(p, func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "checkpoint_evry") {
		t.Errorf("unknown key: %v", err)
	}

	for _, tc := range []struct {
		set  func(c *Config)
		want string
	}{
		{func(c *Config) { c.DecisionLog.CheckpointKeyFile = filepath.Join(c.DataDir, "sub", "k.pem") }, "is inside data_dir"},
		{func(c *Config) { c.DecisionLog.CheckpointKeyFile = c.DataDir }, "is inside data_dir"},
		{func(c *Config) { c.DecisionLog.File = "off"; c.DecisionLog.CheckpointKeyFile = "/k.pem" }, "need decision_log.file"},
		{func(c *Config) { c.DecisionLog.CheckpointFile = "off"; c.DecisionLog.CheckpointKeyFile = "/k.pem" }, "checkpoint_file is off"},
		{func(c *Config) { c.DecisionLog.CheckpointEvery = -1 }, "checkpoint_every"},
		{func(c *Config) { c.DecisionLog.CheckpointInterval = -time.Second }, "checkpoint_interval"},
	} {
		c := defaultConfig()
		c.DataDir = filepath.Join(dir, "data")
		tc.set(&c)
		if err := c.finish(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", c.DecisionLog, err, tc.want)
		}
	}
	// Through a symlink, still inside.
	os.MkdirAll(filepath.Join(dir, "data"), 0o700)
	os.Symlink(filepath.Join(dir, "data"), filepath.Join(dir, "link"))
	c := defaultConfig()
	c.DataDir = filepath.Join(dir, "link")
	c.DecisionLog.CheckpointKeyFile = filepath.Join(dir, "data", "k.pem")
	if err := c.finish(); err == nil {
		t.Error("a key inside data_dir reached through a symlink was accepted")
	}
}

// run's setup opens checkpoints: unsigned with a warning, signed with the
// key's id logged, and the head seq on /metrics.
func TestRunOpensCheckpoints(t *testing.T) {
	dir := t.TempDir()
	for _, signed := range []bool{false, true} {
		logger, log := testLogger()
		cfg := defaultConfig()
		cfg.DataDir = filepath.Join(dir, fmt.Sprint(signed))
		if signed {
			cfg.DecisionLog.CheckpointKeyFile = filepath.Join(dir, "ck.pem")
			if code, out, errs := run(t, "", "audit", "keygen", "--out", cfg.DecisionLog.CheckpointKeyFile); code != 0 {
				t.Fatalf("keygen: %s%s", out, errs)
			}
		}
		if err := cfg.finish(); err != nil {
			t.Fatal(err)
		}
		dlog, err := openDecisionLog(cfg.DecisionLog, logger)
		if err != nil {
			t.Fatal(err)
		}
		reg := prometheus.NewRegistry()
		if err := registerLogMetrics(reg, dlog); err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			if err := dlog.Append(&decisionlog.Record{DecisionID: fmt.Sprint(i), Effect: "deny"}); err != nil {
				t.Fatal(err)
			}
		}
		if got := headSeqMetric(t, reg); got != 3 {
			t.Errorf("agentpdp_decision_log_head_seq = %v, want 3", got)
		}
		if err := dlog.Close(); err != nil {
			t.Fatal(err)
		}
		warned := strings.Contains(log.String(), `"level":"WARN","msg":"decision log checkpoints are unsigned`)
		if warned == signed || signed != strings.Contains(log.String(), `"key_id":"ed25519:`) {
			t.Errorf("signed=%v:\n%s", signed, log)
		}
		cps, err := decisionlog.ReadCheckpoints(cfg.DecisionLog.File + ".checkpoints")
		if err != nil || len(cps) != 1 || cps[0].Seq != 3 || (len(cps[0].Sig) > 0) != signed {
			t.Errorf("signed=%v: checkpoints %+v %v", signed, cps, err)
		}
	}
}

func headSeqMetric(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "agentpdp_decision_log_head_seq" {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatal("no agentpdp_decision_log_head_seq")
	return 0
}
