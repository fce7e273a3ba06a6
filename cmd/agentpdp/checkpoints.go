package main

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/decisionlog"
)

// finishCheckpoints fills the checkpoint file's default and checks the
// settings. Checkpoints vouch for the log file, so they go with it.
func (c *LogConfig) finishCheckpoints(dataDir string) error {
	if c.CheckpointEvery < 0 {
		return fmt.Errorf("decision_log.checkpoint_every must be 0 (not by count) or more, not %d", c.CheckpointEvery)
	}
	if c.CheckpointInterval < 0 {
		return fmt.Errorf("decision_log.checkpoint_interval must be 0 (not by time) or more, not %s", c.CheckpointInterval)
	}
	if c.File == "off" {
		if c.CheckpointKeyFile != "" || (c.CheckpointFile != "" && c.CheckpointFile != "off") {
			return errors.New("decision_log.checkpoint_file and checkpoint_key_file need decision_log.file: checkpoints vouch for it")
		}
		c.CheckpointFile = "off"
		return nil
	}
	if c.CheckpointFile == "" {
		c.CheckpointFile = c.File + ".checkpoints"
	}
	if c.CheckpointFile == "off" {
		if c.CheckpointKeyFile != "" {
			return errors.New("decision_log.checkpoint_key_file is set but checkpoint_file is off")
		}
		return nil
	}
	if c.CheckpointFile == c.File {
		return errors.New("decision_log.checkpoint_file must not be the log file itself")
	}
	// Whoever can cut the log (write the data dir) must not also be able to
	// re-sign its checkpoints.
	if k := c.CheckpointKeyFile; k != "" && inside(k, dataDir) {
		return fmt.Errorf("decision_log.checkpoint_key_file %s is inside data_dir %s: whoever can edit the log could re-sign its checkpoints; keep the key elsewhere", k, dataDir)
	}
	return nil
}

// inside reports whether path is dir or below it, symlinks resolved where
// they exist.
func inside(path, dir string) bool {
	abs := func(p string) string {
		if a, err := filepath.Abs(p); err == nil {
			p = a
		}
		if r, err := filepath.EvalSymlinks(p); err == nil {
			p = r
		}
		return p
	}
	rel, err := filepath.Rel(abs(dir), abs(path))
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// checkpointOptions loads the checkpoint key; nil options when checkpoints
// are off.
func checkpointOptions(c LogConfig, logger *slog.Logger) (*decisionlog.CheckpointOptions, error) {
	if c.CheckpointFile == "" || c.CheckpointFile == "off" {
		return nil, nil
	}
	o := &decisionlog.CheckpointOptions{File: c.CheckpointFile, Every: c.CheckpointEvery, Interval: c.CheckpointInterval}
	keyID := ""
	if c.CheckpointKeyFile == "" {
		logger.Warn("decision log checkpoints are unsigned: whoever can edit the data dir can rewrite them too; "+
			"set decision_log.checkpoint_key_file (create one with `agentpdp audit keygen --out FILE`)", "checkpoint_file", c.CheckpointFile)
	} else {
		key, err := decisionlog.LoadPrivateKey(c.CheckpointKeyFile)
		if err != nil {
			return nil, fmt.Errorf("decision_log.checkpoint_key_file: %w", err)
		}
		o.Key = key
		keyID = decisionlog.KeyID(key.Public().(ed25519.PublicKey))
	}
	logger.Info("decision log checkpoints", "file", o.File, "every", o.Every, "interval", o.Interval.String(), "key_id", keyID)
	return o, nil
}

// registerLogMetrics exports the log's head seq: a copy outside the host
// (Prometheus keeps its history) that a cut tail cannot take with it.
func registerLogMetrics(reg prometheus.Registerer, dlog *decisionlog.Log) error {
	_, err := pdp.RegisterCollector(reg, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "agentpdp_decision_log_head_seq",
		Help: "Seq of the last decision log record (audit verify --head SEQ:HASH checks a log reaches it).",
	}, func() float64 {
		seq, _ := dlog.Head()
		return float64(seq)
	}))
	return err
}
