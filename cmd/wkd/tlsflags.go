package main

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/spf13/pflag"

	"wkd/node"
)

// tlsFlags are the mutual-TLS flags of the commands that serve or dial NATS across machines.
type tlsFlags struct {
	cert, key, ca string
	insecure      bool
}

func bindTLSFlags(fs *pflag.FlagSet, t *tlsFlags) {
	fs.StringVar(&t.cert, "tls-cert", "", "this process's certificate (PEM); with --tls-key and --tls-ca, NATS clients and routes use mutual TLS (make them with 'wkd certs')")
	fs.StringVar(&t.key, "tls-key", "", "the private key of --tls-cert (PEM)")
	fs.StringVar(&t.ca, "tls-ca", "", "the cluster CA (PEM): peers whose certificates it did not sign are refused")
	fs.BoolVar(&t.insecure, "insecure", false, "allow plaintext NATS on addresses other than loopback (only on a network no one else can reach)")
}

// config is the TLS configuration the flags name, nil without them.
func (t tlsFlags) config() (*tls.Config, error) {
	f := node.TLSFiles{Cert: t.cert, Key: t.key, CA: t.ca}
	if !f.Enabled() {
		return nil, nil
	}
	c, err := f.Config()
	if err != nil {
		return nil, fmt.Errorf("--tls-cert, --tls-key, --tls-ca: %w", err)
	}
	return c, nil
}

// requirePlaintextOK refuses plaintext NATS on any of addrs (host:port or nats:// URLs) that
// is not loopback, unless --insecure: gradients and the token would cross the network in the
// clear.
func (t tlsFlags) requirePlaintextOK(what string, addrs ...string) error {
	if t.insecure || t.cert != "" || t.key != "" || t.ca != "" {
		return nil
	}
	for _, a := range addrs {
		if a == "" {
			continue
		}
		host := a
		if u, err := url.Parse(a); err == nil && u.Host != "" {
			host = u.Host
		}
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		if !isLoopback(host) {
			return fmt.Errorf("%s %s is not loopback and NATS would run in plaintext: give --tls-cert, --tls-key and --tls-ca (make them with 'wkd certs'), or --insecure on a network no one else can reach", what, a)
		}
	}
	return nil
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
