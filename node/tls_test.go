package node

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

const testValidity = 24 * time.Hour

func newTestCA(t *testing.T) *CA {
	t.Helper()
	ca, err := NewCA("test CA", 10*testValidity)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// writeTestFiles writes ca's certificate as dir/ca.pem and p as dir/name.pem and
// dir/name-key.pem, and returns their TLSFiles.
func writeTestFiles(t *testing.T, dir, name string, ca *CA, p KeyPair) TLSFiles {
	t.Helper()
	f := CertFiles(dir, name)
	if err := os.WriteFile(f.CA, pemCert(ca.Cert), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := p.WriteFiles(f.Cert, f.Key); err != nil {
		t.Fatal(err)
	}
	return f
}

func pemCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// issue is a certificate for name from ca, failing the test on error.
func issue(t *testing.T, ca *CA, name string) KeyPair {
	t.Helper()
	p, err := ca.Issue(name, nil, testValidity)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// testConfig is the Config of name's certificate from ca, through files as a node loads it.
func testConfig(t *testing.T, ca *CA, name string) *tls.Config {
	t.Helper()
	cfg, err := writeTestFiles(t, t.TempDir(), name, ca, issue(t, ca, name)).Config()
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// handshakeResult is what each end of one TLS connection saw.
type handshakeResult struct {
	serverErr, clientErr error
	serverSaw, clientSaw string // the peer certificate's common name
}

// handshake connects a client with clientCfg to a server with serverCfg over loopback TCP
// and sends a byte each way, so that a refusal by either end fails both (in TLS 1.3 the
// client finishes its handshake before the server has checked the client's certificate).
func handshake(t *testing.T, serverCfg, clientCfg *tls.Config) handshakeResult {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var r handshakeResult
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			r.serverErr = err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		conn := tls.Server(c, serverCfg)
		r.serverErr = exchange(conn, false)
		if r.serverErr == nil {
			r.serverSaw = conn.ConnectionState().PeerCertificates[0].Subject.CommonName
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	conn := tls.Client(c, clientCfg)
	r.clientErr = exchange(conn, true)
	if r.clientErr == nil {
		r.clientSaw = conn.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	c.Close()
	<-done
	return r
}

// exchange completes the handshake on conn, then the client writes a byte and reads one
// back; the server reads it and writes one back.
func exchange(conn *tls.Conn, client bool) error {
	if err := conn.Handshake(); err != nil {
		return err
	}
	b := []byte{'x'}
	if client {
		if _, err := conn.Write(b); err != nil {
			return err
		}
		_, err := conn.Read(b)
		return err
	}
	if _, err := conn.Read(b); err != nil {
		return err
	}
	_, err := conn.Write(b)
	return err
}

func TestTLSSameCAHandshakeBothWays(t *testing.T) {
	ca := newTestCA(t)
	a, b := testConfig(t, ca, "node-a"), testConfig(t, ca, "node-b")
	if a.ClientAuth != tls.RequireAndVerifyClientCert || a.MinVersion < tls.VersionTLS12 || len(a.Certificates) != 1 {
		t.Fatalf("config: ClientAuth %v, MinVersion %x, %d certificates", a.ClientAuth, a.MinVersion, len(a.Certificates))
	}
	for _, c := range []struct {
		server, client *tls.Config
		sName, cName   string
	}{{a, b, "node-a", "node-b"}, {b, a, "node-b", "node-a"}} {
		r := handshake(t, c.server, c.client)
		if r.serverErr != nil || r.clientErr != nil {
			t.Fatalf("server %s, client %s: server error %v, client error %v", c.sName, c.cName, r.serverErr, r.clientErr)
		}
		if r.serverSaw != c.cName || r.clientSaw != c.sName {
			t.Errorf("server %s saw %q, client %s saw %q", c.sName, r.serverSaw, c.cName, r.clientSaw)
		}
	}
}

// TestTLSOtherCARefused: each end refuses a peer of another CA by itself. The peer of the
// other CA trusts everything, so the refusal can only come from the end under test.
func TestTLSOtherCARefused(t *testing.T) {
	ours, theirs := newTestCA(t), newTestCA(t)
	node := testConfig(t, ours, "node")
	rogue := testConfig(t, theirs, "rogue")
	rogue.ClientAuth = tls.RequestClientCert // asks for the client's certificate, checks nothing
	rogue.VerifyConnection = nil             // with InsecureSkipVerify: accepts any server

	if r := handshake(t, rogue, node); !errors.Is(r.clientErr, ErrTLS) || r.serverErr == nil {
		t.Errorf("server of another CA: client error %v (want ErrTLS), server error %v", r.clientErr, r.serverErr)
	}
	if r := handshake(t, node, rogue); r.serverErr == nil || !strings.Contains(r.serverErr.Error(), "unknown authority") || r.clientErr == nil {
		t.Errorf("client of another CA: server error %v (want unknown authority), client error %v", r.serverErr, r.clientErr)
	}
}

func TestTLSClientWithoutCertificateRefused(t *testing.T) {
	ca := newTestCA(t)
	server := testConfig(t, ca, "node")
	anon := testConfig(t, ca, "anon")
	anon.Certificates = nil
	r := handshake(t, server, anon)
	if r.serverErr == nil || !strings.Contains(r.serverErr.Error(), "certificate") || r.clientErr == nil {
		t.Errorf("client without a certificate: server error %v, client error %v", r.serverErr, r.clientErr)
	}
}

// TestTLSServerCertificateNeedsServerAuth: a client refuses a server whose certificate, though
// the CA signed it, is for clients only.
func TestTLSServerCertificateNeedsServerAuth(t *testing.T) {
	ca := newTestCA(t)
	tmpl, err := leafTemplate("client-only", nil, time.Now(), testValidity)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	p, err := ca.sign(tmpl)
	if err != nil {
		t.Fatal(err)
	}
	server := newTLSConfig(tlsPair(p), poolOf(ca))
	server.ClientAuth = tls.RequestClientCert
	r := handshake(t, server, testConfig(t, ca, "node"))
	if !errors.Is(r.clientErr, ErrTLS) || !strings.Contains(r.clientErr.Error(), "usage") {
		t.Errorf("server with a client-only certificate: client error %v, want ErrTLS about its usage", r.clientErr)
	}
}

func TestTLSExpiredRefused(t *testing.T) {
	ca := newTestCA(t)
	tmpl, err := leafTemplate("old", nil, time.Now().Add(-3*testValidity), testValidity)
	if err != nil {
		t.Fatal(err)
	}
	old, err := ca.sign(tmpl)
	if err != nil {
		t.Fatal(err)
	}
	err = writeTestFiles(t, t.TempDir(), "old", ca, old).Validate()
	if !errors.Is(err, ErrTLS) || !strings.Contains(err.Error(), "expired") || !strings.Contains(err.Error(), "--nodes old --overwrite") {
		t.Errorf("Validate of an expired certificate: %v", err)
	}
	expired := newTLSConfig(tlsPair(old), poolOf(ca))
	node := testConfig(t, ca, "node")
	if r := handshake(t, expired, node); !errors.Is(r.clientErr, ErrTLS) || !strings.Contains(r.clientErr.Error(), "expired") {
		t.Errorf("expired server: client error %v", r.clientErr)
	}
	if r := handshake(t, node, expired); r.serverErr == nil || !strings.Contains(r.serverErr.Error(), "expired") {
		t.Errorf("expired client: server error %v", r.serverErr)
	}
}

func tlsPair(p KeyPair) tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{p.Cert.Raw}, PrivateKey: p.Key, Leaf: p.Cert}
}

func poolOf(ca *CA) *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return pool
}

func TestTLSValidate(t *testing.T) {
	var none TLSFiles
	if cfg, err := none.Config(); none.Enabled() || none.Validate() != nil || cfg != nil || err != nil {
		t.Fatalf("no files: Enabled %v, Validate %v, Config %v, %v; want TLS off", none.Enabled(), none.Validate(), cfg, err)
	}
	dir := t.TempDir()
	ours, theirs := newTestCA(t), newTestCA(t)
	good := writeTestFiles(t, dir, "good", ours, issue(t, ours, "good"))
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	other := writeTestFiles(t, t.TempDir(), "other", theirs, issue(t, theirs, "other"))
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not PEM\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")

	cases := []struct {
		name  string
		files TLSFiles
		want  []string // in the message
		is    error    // besides ErrTLS
	}{
		{"cert only", TLSFiles{Cert: good.Cert}, []string{"go together", "key is not given"}, nil},
		{"key only", TLSFiles{Key: good.Key}, []string{"go together", "certificate is not given"}, nil},
		{"CA only", TLSFiles{CA: good.CA}, []string{"go together", "certificate is not given"}, nil},
		{"no CA", TLSFiles{Cert: good.Cert, Key: good.Key}, []string{"go together", "CA certificate is not given"}, nil},
		{"no key", TLSFiles{Cert: good.Cert, CA: good.CA}, []string{"key is not given"}, nil},
		{"no cert", TLSFiles{Key: good.Key, CA: good.CA}, []string{"certificate is not given"}, nil},
		{"missing cert", TLSFiles{Cert: missing, Key: good.Key, CA: good.CA}, []string{missing, "wkd certs"}, fs.ErrNotExist},
		{"missing key", TLSFiles{Cert: good.Cert, Key: missing, CA: good.CA}, []string{"key " + missing, "wkd certs"}, fs.ErrNotExist},
		{"missing CA", TLSFiles{Cert: good.Cert, Key: good.Key, CA: missing}, []string{"CA certificate " + missing}, fs.ErrNotExist},
		{"mismatched key", TLSFiles{Cert: good.Cert, Key: other.Key, CA: good.CA}, []string{other.Key, good.Cert, "not the key"}, nil},
		{"cert of another CA", TLSFiles{Cert: other.Cert, Key: other.Key, CA: good.CA}, []string{other.Cert, good.CA, "unknown authority"}, nil},
		{"leaf as CA", TLSFiles{Cert: good.Cert, Key: good.Key, CA: good.Cert}, []string{"not a CA certificate"}, nil},
		{"cert and key swapped", TLSFiles{Cert: good.Key, Key: good.Cert, CA: good.CA}, []string{good.Key, "holds a private key"}, nil},
		{"garbage cert", TLSFiles{Cert: garbage, Key: good.Key, CA: good.CA}, []string{garbage, "no PEM certificate"}, nil},
		{"garbage key", TLSFiles{Cert: good.Cert, Key: garbage, CA: good.CA}, []string{garbage, "no PEM private key"}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.files.Validate()
			if !errors.Is(err, ErrTLS) {
				t.Fatalf("Validate: %v, want ErrTLS", err)
			}
			if c.is != nil && !errors.Is(err, c.is) {
				t.Errorf("Validate: %v, want it to wrap %v", err, c.is)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate: %q lacks %q", err, w)
				}
			}
			if cfg, err := c.files.Config(); cfg != nil || !errors.Is(err, ErrTLS) {
				t.Errorf("Config: %v, %v; want the error of Validate", cfg, err)
			}
		})
	}
}

// TestCAWriteLoadIssue: a CA written to files and loaded back issues certificates that
// validate against the CA file, with the modes, names, usages and serials promised.
func TestCAWriteLoadIssue(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t)
	if !ca.Cert.IsCA || ca.Cert.KeyUsage&x509.KeyUsageCertSign == 0 || ca.Cert.CheckSignatureFrom(ca.Cert) != nil {
		t.Fatalf("CA certificate: IsCA %v, KeyUsage %b, self-signed %v", ca.Cert.IsCA, ca.Cert.KeyUsage, ca.Cert.CheckSignatureFrom(ca.Cert))
	}
	caFile, caKey := filepath.Join(dir, CAFile), filepath.Join(dir, CAKeyFile)
	if err := ca.WriteFiles(caFile, caKey); err != nil {
		t.Fatal(err)
	}
	checkMode(t, caFile, 0o644)
	checkMode(t, caKey, 0o600)
	loaded, err := LoadCA(caFile, caKey)
	if err != nil {
		t.Fatal(err)
	}
	p, err := loaded.Issue("node-1", []string{"10.0.0.7", "gpu7.example", "::1"}, testValidity)
	if err != nil {
		t.Fatal(err)
	}
	f := CertFiles(dir, "node-1")
	if err := p.WriteFiles(f.Cert, f.Key); err != nil {
		t.Fatal(err)
	}
	checkMode(t, f.Key, 0o600)
	checkMode(t, f.Cert, 0o644)
	if err := f.Validate(); err != nil {
		t.Fatal(err)
	}

	c := p.Cert
	var ips []string
	for _, ip := range c.IPAddresses {
		ips = append(ips, ip.String())
	}
	if !slices.Equal(c.DNSNames, []string{"node-1", "localhost", "gpu7.example"}) || !slices.Equal(ips, []string{"127.0.0.1", "10.0.0.7", "::1"}) {
		t.Errorf("names %q, IPs %q", c.DNSNames, ips)
	}
	if !slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}) || c.IsCA {
		t.Errorf("ExtKeyUsage %v, IsCA %v", c.ExtKeyUsage, c.IsCA)
	}
	if since := time.Since(c.NotBefore); since < time.Minute || since > time.Hour {
		t.Errorf("NotBefore %v ago, want a few minutes", since)
	}
	if q := issue(t, loaded, "node-1"); q.Cert.SerialNumber.Cmp(c.SerialNumber) == 0 || c.SerialNumber.BitLen() < 100 || c.SerialNumber.BitLen() > 128 {
		t.Errorf("serials %v and %v: want two random 128-bit numbers", c.SerialNumber, q.Cert.SerialNumber)
	}

	if _, err := ca.Issue("n", []string{"bad host!"}, testValidity); !errors.Is(err, ErrTLS) || !strings.Contains(err.Error(), "bad host!") {
		t.Errorf("bad host: %v", err)
	}
	if _, err := ca.Issue("n", nil, 100*testValidity); !errors.Is(err, ErrTLS) || !strings.Contains(err.Error(), "outlive") {
		t.Errorf("certificate outliving its CA: %v", err)
	}
	if _, err := ca.Issue("n", nil, -time.Hour); !errors.Is(err, ErrTLS) {
		t.Errorf("negative validity: %v", err)
	}
	if _, err := LoadCA(f.Cert, f.Key); !errors.Is(err, ErrTLS) || !strings.Contains(err.Error(), "not a CA") {
		t.Errorf("LoadCA of a node's certificate: %v", err)
	}
	if _, err := LoadCA(caFile, f.Key); !errors.Is(err, ErrTLS) || !strings.Contains(err.Error(), "not the key") {
		t.Errorf("LoadCA with another key: %v", err)
	}
}

func checkMode(t *testing.T, file string, want os.FileMode) {
	t.Helper()
	st, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != want {
		t.Errorf("%s: mode %v, want %v", file, st.Mode().Perm(), want)
	}
}

// TestTLSConfigWithNATS: the one Config serves nats-server for clients and for routes
// (accepted and dialled), and the nats.go client; a client of another CA cannot connect.
func TestTLSConfigWithNATS(t *testing.T) {
	ca := newTestCA(t)
	start := func(name string, routes ...string) *server.Server {
		cfg := testConfig(t, ca, name)
		opts := &server.Options{ServerName: name, Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
			TLSConfig: cfg, TLSTimeout: 5}
		opts.Cluster = server.ClusterOpts{Name: "wkd", Host: "127.0.0.1", Port: -1, TLSConfig: cfg, TLSTimeout: 5}
		for _, r := range routes {
			opts.Routes = append(opts.Routes, server.RoutesFromStr(r)...)
		}
		s, err := server.NewServer(opts)
		if err != nil {
			t.Fatal(err)
		}
		go s.Start()
		t.Cleanup(s.Shutdown)
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatalf("nats-server %s did not start", name)
		}
		return s
	}
	s1 := start("s1")
	s2 := start("s2", "nats-route://"+s1.ClusterAddr().String())
	for deadline := time.Now().Add(10 * time.Second); s1.NumRoutes() == 0 || s2.NumRoutes() == 0; {
		if time.Now().After(deadline) {
			t.Fatal("no TLS route between the two servers")
		}
		time.Sleep(20 * time.Millisecond)
	}

	sub, err := nats.Connect(s1.ClientURL(), nats.Secure(testConfig(t, ca, "client")))
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	msgs, err := sub.SubscribeSync("x")
	if err != nil {
		t.Fatal(err)
	}
	sub.Flush()
	pub, err := nats.Connect(s2.ClientURL(), nats.Secure(testConfig(t, ca, "client")))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	// The subscription reaches s2 over the route shortly after Flush; publish until it arrives.
	var got *nats.Msg
	for deadline := time.Now().Add(10 * time.Second); got == nil && time.Now().Before(deadline); {
		pub.Publish("x", []byte("hello"))
		got, _ = msgs.NextMsg(50 * time.Millisecond)
	}
	if got == nil || string(got.Data) != "hello" {
		t.Fatalf("message across the TLS route: %v", got)
	}

	if nc, err := nats.Connect(s1.ClientURL(), nats.Secure(testConfig(t, newTestCA(t), "rogue")), nats.Timeout(5*time.Second)); err == nil {
		nc.Close()
		t.Error("a client of another CA connected")
	}
}
