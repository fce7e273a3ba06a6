package main

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/agentpdp/agentpdp/pdp/decisionlog"
)

func cmdAuditVerify(args []string, stdout io.Writer) error {
	fs := newFlags("audit verify")
	logPath := fs.String("log", "", "the log's current file; its rotated files are found and verified too")
	var cpFiles []string
	fs.Func("checkpoints", "checkpoint `FILE` (or a capture of the stdout sink or HTTP uploads): the log must reach its last checkpoint and hold each one's hash; repeatable", func(v string) error {
		cpFiles = append(cpFiles, v)
		return nil
	})
	head := fs.String("head", "", "`SEQ:HASH` the log must reach, noted elsewhere (a checkpoint); a bare SEQ (from /metrics) checks its length only")
	pubPath := fs.String("public-key", "", "Ed25519 public key `FILE` (PEM, from audit keygen) that must have signed every checkpoint; without it signatures are not checked")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	files := fs.Args()
	if *logPath != "" {
		files = append(decisionlog.Files(*logPath), files...)
	}
	if len(files) == 0 {
		return fmt.Errorf("%w: audit verify needs --log PATH or log files", errUsage)
	}
	var opts decisionlog.VerifyOptions
	for _, f := range cpFiles {
		cps, err := decisionlog.ReadCheckpoints(f)
		if err != nil {
			return err
		}
		opts.Checkpoints = append(opts.Checkpoints, cps...)
	}
	if *head != "" {
		c, err := decisionlog.ParseHead(*head)
		if err != nil {
			return fmt.Errorf("%w: --head: %v", errUsage, err)
		}
		opts.Checkpoints = append(opts.Checkpoints, c)
	}
	if *pubPath != "" {
		if len(cpFiles) == 0 {
			return fmt.Errorf("%w: --public-key checks checkpoints: give --checkpoints FILE", errUsage)
		}
		key, err := decisionlog.LoadPublicKey(*pubPath)
		if err != nil {
			return err
		}
		opts.PublicKey = key
	}
	res, err := decisionlog.VerifyWith(files, stdout, opts)
	if err != nil {
		return err
	}
	if res.FirstBad != nil {
		return res.FirstBad
	}
	switch n := len(res.Problems); n {
	case 0:
		return nil
	case 1:
		return errors.New(res.Problems[0])
	default:
		return fmt.Errorf("%s (and %d more problem(s), listed above)", res.Problems[0], n-1)
	}
}

// cmdAuditKeygen creates a checkpoint signing key: the private key for
// decision_log.checkpoint_key_file, the public key for audit verify.
func cmdAuditKeygen(args []string, stdout io.Writer) error {
	fs := newFlags("audit keygen")
	out := fs.String("out", "", "private key `FILE` to create (PEM PKCS #8, mode 0600); the public key goes to FILE.pub")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *out == "" || fs.NArg() > 0 {
		return fmt.Errorf("%w: audit keygen --out FILE", errUsage)
	}
	_, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		return err
	}
	priv, pub, err := decisionlog.MarshalKey(key)
	if err != nil {
		return err
	}
	if err := writeNew(*out, priv, 0o600); err != nil {
		return err
	}
	if err := writeNew(*out+".pub", pub, 0o644); err != nil {
		os.Remove(*out) // no key without its public half
		return err
	}
	fmt.Fprintf(stdout, "private key: %s (decision_log.checkpoint_key_file; keep it outside data_dir)\n"+
		"public key:  %s (audit verify --public-key), key_id %s\n%s",
		*out, *out+".pub", decisionlog.KeyID(key.Public().(ed25519.PublicKey)), pub)
	return nil
}

// writeNew creates path, refusing to overwrite: a key replaced by mistake
// cannot verify the checkpoints it signed.
func writeNew(path string, b []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
	}
	return err
}
