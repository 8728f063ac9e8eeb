package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"wkd/node"
)

func runCertsCmd(args ...string) error { return wkd(append([]string{"certs"}, args...)...) }

func readFile(t *testing.T, file string) []byte {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCertsIssueAndReuse: the first run makes a CA and the certificates; a later run reuses
// the CA for a new node and leaves everything else alone; an existing certificate is
// replaced only with --overwrite, and a refused run writes nothing.
func TestCertsIssueAndReuse(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	if err := runCertsCmd("--out", dir, "--nodes", "n1,gpu_2.b", "--hosts", "10.0.0.9,head.example", "--valid-for", "720h"); err != nil {
		t.Fatal(err)
	}
	modes := map[string]os.FileMode{node.CAFile: 0o644, node.CAKeyFile: 0o600}
	for _, n := range []string{"n1", "gpu_2.b", "client"} {
		modes[n+".pem"], modes[n+"-key.pem"] = 0o644, 0o600
		if err := node.CertFiles(dir, n).Validate(); err != nil {
			t.Errorf("%s: %v", n, err)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(modes) {
		t.Errorf("%d files in %s, want %d: %v", len(entries), dir, len(modes), entries)
	}
	for file, want := range modes {
		if st, err := os.Stat(filepath.Join(dir, file)); err != nil || st.Mode().Perm() != want {
			t.Errorf("%s: %v, mode %v; want %v", file, err, st.Mode().Perm(), want)
		}
	}

	ca, caKey := readFile(t, filepath.Join(dir, node.CAFile)), readFile(t, filepath.Join(dir, node.CAKeyFile))
	client, n1 := readFile(t, filepath.Join(dir, "client.pem")), readFile(t, filepath.Join(dir, "n1.pem"))
	if err := runCertsCmd("--out", dir, "--nodes", "n3"); err != nil {
		t.Fatal(err)
	}
	if err := node.CertFiles(dir, "n3").Validate(); err != nil {
		t.Errorf("n3, issued by the reused CA: %v", err)
	}
	if !bytes.Equal(readFile(t, filepath.Join(dir, node.CAFile)), ca) || !bytes.Equal(readFile(t, filepath.Join(dir, node.CAKeyFile)), caKey) {
		t.Error("the second run replaced the CA")
	}
	if !bytes.Equal(readFile(t, filepath.Join(dir, "client.pem")), client) {
		t.Error("the second run replaced the client's certificate")
	}

	err = runCertsCmd("--out", dir, "--nodes", "n4,n1")
	if n1File := filepath.Join(dir, "n1.pem"); err == nil || !strings.Contains(err.Error(), n1File) || !strings.Contains(err.Error(), "--overwrite") {
		t.Errorf("issuing n1 again: %v, want a refusal naming %s and --overwrite", err, n1File)
	}
	if _, err := os.Stat(filepath.Join(dir, "n4.pem")); err == nil {
		t.Error("the refused run wrote n4.pem")
	}
	if err := runCertsCmd("--out", dir, "--nodes", "n1", "--overwrite"); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(readFile(t, filepath.Join(dir, "n1.pem")), n1) || node.CertFiles(dir, "n1").Validate() != nil {
		t.Error("--overwrite did not replace n1's certificate with a valid one")
	}
	if !bytes.Equal(readFile(t, filepath.Join(dir, node.CAFile)), ca) {
		t.Error("--overwrite replaced the CA")
	}

	if err := runCertsCmd("--out", dir); err == nil || !strings.Contains(err.Error(), "--nodes") {
		t.Errorf("a run with nothing to issue: %v", err)
	}
	if err := runCertsCmd("--out", dir, "--nodes", "n5", "--valid-for", "200000h"); err == nil || !strings.Contains(err.Error(), "outlive the CA") {
		t.Errorf("a certificate outliving the CA: %v", err)
	}
}

// TestCertsNeverReplacesACA: half a CA (its certificate without its key, as on a node's
// machine) is an error, --overwrite or not, and the file is left alone.
func TestCertsNeverReplacesACA(t *testing.T) {
	dir := t.TempDir()
	caFile := filepath.Join(dir, node.CAFile)
	if err := os.WriteFile(caFile, []byte("a CA\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"--nodes", "n1"}, {"--nodes", "n1", "--overwrite"}} {
		err := runCertsCmd(append([]string{"--out", dir}, args...)...)
		if err == nil || !strings.Contains(err.Error(), node.CAKeyFile) || !strings.Contains(err.Error(), "by hand") {
			t.Errorf("wkd certs %s beside a CA without its key: %v", strings.Join(args, " "), err)
		}
	}
	if string(readFile(t, caFile)) != "a CA\n" {
		t.Error("ca.pem was replaced")
	}
	if err := os.WriteFile(filepath.Join(dir, node.CAKeyFile), []byte("a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := runCertsCmd("--out", dir, "--nodes", "n1", "--overwrite"); err == nil || !strings.Contains(err.Error(), "never replaces a CA") {
		t.Errorf("an unreadable CA: %v", err)
	}
	if string(readFile(t, caFile)) != "a CA\n" {
		t.Error("ca.pem was replaced")
	}
}

func TestCertsBadFlags(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--nodes", "a/b"}, `--nodes "a/b": a name is a file name`},
		{[]string{"--nodes=-x"}, `--nodes "-x"`},
		{[]string{"--nodes", "ca"}, `--nodes "ca"`},
		{[]string{"--nodes", "n1-key"}, `--nodes "n1-key"`},
		{[]string{"--nodes", "n1,n1"}, `--nodes names "n1" twice`},
		{[]string{"--nodes", "n1", "--valid-for", "-1h"}, "--valid-for -1h0m0s must be positive"},
		{[]string{"--nodes", "n1", "--valid-for", "0s"}, "--valid-for 0s must be positive"},
		{[]string{"--nodes", "n1", "--hosts", "bad host"}, `--hosts "bad host"`},
		{[]string{"--nodes", "n1", "--hosts", "-a.example"}, `--hosts "-a.example"`},
	}
	for _, c := range cases {
		out := filepath.Join(t.TempDir(), "certs")
		argv := append([]string{"certs", "--out", out}, c.args...)
		_, errOut, code := run(argv...)
		if code != 1 || !strings.HasPrefix(errOut, "wkd certs: ") || !strings.Contains(errOut, c.want) {
			t.Errorf("wkd %s: exit %d, stderr %q; want 1 and %q", strings.Join(argv, " "), code, errOut, c.want)
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("wkd %s: the failed run made %s", strings.Join(argv, " "), out)
		}
	}
}
