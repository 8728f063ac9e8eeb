package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"wkd/node"
)

func init() {
	register(command{name: "certs", summary: "make the cluster's CA and a TLS certificate for each node", group: groupCluster,
		long: "Make the cluster's private CA and a TLS certificate and key for each node, for mutual TLS\n" +
			"between the nodes, the NATS server and clients. A node accepts a peer if and only if the\n" +
			"CA signed its certificate; host names are not checked, so certificates can be made before\n" +
			"the machines have addresses.\n\n" +
			"The first run makes the CA (--out/ca.pem and ca-key.pem); later runs in the same --out\n" +
			"reuse it and issue only the certificates named, so nodes can be added. A CA is never\n" +
			"replaced. Besides the --nodes, a certificate named \"client\" is made, for wkd logs and other\n" +
			"clients, when --out has none. Copy ca.pem and a node's NAME.pem and NAME-key.pem to its\n" +
			"machine; ca-key.pem stays with you.",
		flags: certsFlags})
}

const (
	// certsCAValidity is how long a new CA is valid (or --valid-for, if longer): certificates
	// cannot outlive it, and replacing it means reissuing every certificate.
	certsCAValidity = 10 * 365 * 24 * time.Hour
	// certsClient is the certificate made for clients besides the nodes.
	certsClient = "client"
)

// certsName is a name that is also a file name: it starts with a letter or digit.
var certsName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

func certsFlags(fs *pflag.FlagSet, _ []string) func([]string) error {
	out := fs.String("out", "certs", "folder of the CA and the certificates")
	nodes := fs.StringSlice("nodes", nil, "names to issue a certificate for, comma-separated (letters, digits, '-', '_', '.')")
	hosts := fs.StringSlice("hosts", nil, "extra DNS names or IP addresses in every certificate issued (peers do not check them)")
	validFor := fs.Duration("valid-for", 365*24*time.Hour, "how long the certificates issued are valid, e.g. 720h")
	overwrite := fs.Bool("overwrite", false, "replace existing certificates of the --nodes (never the CA)")
	return func([]string) error {
		names, err := certsNames(*nodes)
		if err != nil {
			return err
		}
		if *validFor <= 0 {
			return fmt.Errorf("--valid-for %v must be positive, e.g. 720h for 30 days", *validFor)
		}
		hs, err := certsHosts(*hosts)
		if err != nil {
			return err
		}
		return runCerts(*out, names, hs, *validFor, *overwrite)
	}
}

// certsNames checks the names of --nodes: file-safe, not the CA's, not ending in -key (whose
// files would be another name's key), each once. Empty entries (a trailing comma) are dropped.
func certsNames(nodes []string) ([]string, error) {
	var names []string
	for _, n := range nodes {
		n = strings.TrimSpace(n)
		switch {
		case n == "":
			continue
		case !certsName.MatchString(n):
			return nil, fmt.Errorf("--nodes %q: a name is a file name: letters, digits, '-', '_' and '.', starting with a letter or digit", n)
		case n == "ca" || strings.HasSuffix(n, "-key"):
			return nil, fmt.Errorf("--nodes %q: the name of a node's files would clash with the CA's or another node's key: choose another name", n)
		case slices.Contains(names, n):
			return nil, fmt.Errorf("--nodes names %q twice", n)
		}
		names = append(names, n)
	}
	return names, nil
}

// certsHostName is a DNS name: dot-separated labels of letters, digits and inner hyphens.
var certsHostName = regexp.MustCompile(`^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)

// certsHosts checks the entries of --hosts and drops the empty ones (a trailing comma).
func certsHosts(hosts []string) ([]string, error) {
	var hs []string
	for _, h := range hosts {
		h = strings.TrimSpace(h)
		switch {
		case h == "":
			continue
		case net.ParseIP(h) == nil && !certsHostName.MatchString(h):
			return nil, fmt.Errorf("--hosts %q is neither an IP address nor a DNS name", h)
		}
		hs = append(hs, h)
	}
	return hs, nil
}

// runCerts issues the certificates of names (and the client's, when dir has none) into dir,
// with the CA there or a new one. Everything is made and checked before the first file is
// written, so a refused run leaves dir as it was.
func runCerts(dir string, names, hosts []string, validFor time.Duration, overwrite bool) error {
	caFile, caKeyFile := filepath.Join(dir, node.CAFile), filepath.Join(dir, node.CAKeyFile)
	ca, err := certsLoadCA(caFile, caKeyFile)
	if err != nil {
		return err
	}
	newCA := ca == nil
	if newCA {
		ca, err = node.NewCA("wkd cluster CA", max(certsCAValidity, validFor+24*time.Hour))
		if err != nil {
			return err
		}
	} else if end := time.Now().Add(validFor); end.After(ca.Cert.NotAfter) {
		if time.Now().After(ca.Cert.NotAfter) {
			return fmt.Errorf("the CA in %s expired on %s: move %s and %s away by hand to make a new CA, then issue every certificate again",
				caFile, ca.Cert.NotAfter.Format(time.DateOnly), caFile, caKeyFile)
		}
		return fmt.Errorf("--valid-for %v: the certificates would outlive the CA in %s, valid until %s; give a shorter --valid-for",
			validFor, caFile, ca.Cert.NotAfter.Format(time.DateOnly))
	}

	for _, n := range names {
		f := node.CertFiles(dir, n)
		for _, file := range []string{f.Cert, f.Key} {
			if exists, err := certsExists(file); err != nil {
				return err
			} else if exists && !overwrite {
				return fmt.Errorf("%s exists: --overwrite replaces it, or choose another name", file)
			}
		}
	}
	if !slices.Contains(names, certsClient) {
		f := node.CertFiles(dir, certsClient)
		cert, err := certsExists(f.Cert)
		if err != nil {
			return err
		}
		key, err := certsExists(f.Key)
		if err != nil {
			return err
		}
		if !cert && !key {
			names = append(names, certsClient)
		}
	}
	if len(names) == 0 {
		return fmt.Errorf("nothing to issue: %s has a CA and a client certificate; name the nodes with --nodes", dir)
	}

	pairs := make([]node.KeyPair, len(names))
	for i, n := range names {
		if pairs[i], err = ca.Issue(n, hosts, validFor); err != nil {
			return fmt.Errorf("certificate %s: %w", n, err)
		}
	}

	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	if newCA {
		if err := ca.WriteFiles(caFile, caKeyFile); err != nil {
			return err
		}
		fmt.Printf("wkd certs: made a new CA, valid until %s: %s (for every machine) and %s (keep it with you)\n",
			ca.Cert.NotAfter.Format(time.DateOnly), caFile, caKeyFile)
	} else {
		fmt.Printf("wkd certs: reusing the CA in %s\n", caFile)
	}
	for i, n := range names {
		f := node.CertFiles(dir, n)
		if err := pairs[i].WriteFiles(f.Cert, f.Key); err != nil {
			return err
		}
	}
	count := fmt.Sprintf("%d certificates", len(names))
	if len(names) == 1 {
		count = "1 certificate"
	}
	fmt.Printf("wkd certs: wrote %s, valid until %s, each also naming localhost, 127.0.0.1%s; flags for each:\n",
		count, pairs[0].Cert.NotAfter.Format(time.DateOnly), certsList(hosts))
	width := 0
	for _, n := range names {
		width = max(width, len(n)+1)
	}
	for _, n := range names {
		f := node.CertFiles(dir, n)
		fmt.Printf("  %-*s --tls-cert %s --tls-key %s --tls-ca %s\n", width, n+":", f.Cert, f.Key, f.CA)
	}
	return nil
}

func certsList(hosts []string) string {
	if len(hosts) == 0 {
		return ""
	}
	return ", " + strings.Join(hosts, ", ")
}

// certsLoadCA loads the CA in caFile and caKeyFile; nil, with no error, when neither exists.
func certsLoadCA(caFile, caKeyFile string) (*node.CA, error) {
	cert, err := certsExists(caFile)
	if err != nil {
		return nil, err
	}
	key, err := certsExists(caKeyFile)
	if err != nil {
		return nil, err
	}
	switch {
	case !cert && !key:
		return nil, nil
	case !key:
		return nil, fmt.Errorf("%s exists but %s does not: certificates are issued where the CA's key is; "+
			"to make a new CA instead, move %s away by hand (every certificate must then be issued again)", caFile, caKeyFile, caFile)
	case !cert:
		return nil, fmt.Errorf("%s exists but %s does not: wkd certs never replaces a CA; move %s away by hand to make a new one",
			caKeyFile, caFile, caKeyFile)
	}
	ca, err := node.LoadCA(caFile, caKeyFile)
	if err != nil {
		return nil, fmt.Errorf("%w; wkd certs never replaces a CA: to make a new one, move %s and %s away by hand (every certificate must then be issued again)",
			err, caFile, caKeyFile)
	}
	return ca, nil
}

// certsExists says whether file exists; an error other than its absence is returned.
func certsExists(file string) (bool, error) {
	_, err := os.Stat(file)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}
