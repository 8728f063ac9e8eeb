package node

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"wkd/internal/atomicfile"
)

// ErrTLS: a certificate, key or CA file is missing, unreadable or does not fit the others, or
// a peer's certificate was refused.
var ErrTLS = errors.New("node: TLS")

const (
	// CAFile and CAKeyFile are the names `wkd certs` gives the cluster CA's certificate and key
	// in its folder. Every machine needs CAFile; CAKeyFile stays with whoever issues certificates.
	CAFile    = "ca.pem"
	CAKeyFile = "ca-key.pem"
	// clockSkew is how far in the past certificates start, so a peer whose clock is a little
	// behind accepts a certificate made a moment ago.
	clockSkew = 5 * time.Minute
)

// TLSFiles names the PEM files of mutual TLS: this process's certificate and key, and the
// cluster CA that signed every certificate of the cluster. All three or none.
type TLSFiles struct {
	// Cert is this node's (or client's) certificate, optionally followed by intermediates.
	Cert string
	// Key is the private key of Cert (PKCS#8, SEC 1 or PKCS#1).
	Key string
	// CA is the cluster CA's certificate; peers are accepted if and only if it signed theirs.
	CA string
}

// CertFiles is where `wkd certs --out dir --nodes name` puts name's certificate and key and
// the CA: dir/name.pem, dir/name-key.pem and dir/ca.pem.
func CertFiles(dir, name string) TLSFiles {
	return TLSFiles{
		Cert: filepath.Join(dir, name+".pem"),
		Key:  filepath.Join(dir, name+"-key.pem"),
		CA:   filepath.Join(dir, CAFile),
	}
}

// Enabled says whether any of the files is set: TLS is wanted (Validate says if it can be had).
func (f TLSFiles) Enabled() bool { return f.Cert != "" || f.Key != "" || f.CA != "" }

// Validate checks that all three files or none are set, that each exists and parses, that the
// key is the certificate's, and that the certificate is signed by the CA and in date.
func (f TLSFiles) Validate() error {
	_, err := f.load()
	return err
}

// Config is the *tls.Config of f for both ends of a connection: nats-server uses one config
// to accept clients and routes and to dial routes, and a client dials with it. Each side
// presents its certificate and accepts the other only if the cluster CA signed it (TLS 1.3,
// certificates required both ways). Config is nil, with no error, when f is not Enabled.
func (f TLSFiles) Config() (*tls.Config, error) {
	if !f.Enabled() {
		return nil, nil
	}
	m, err := f.load()
	if err != nil {
		return nil, err
	}
	return newTLSConfig(m.pair, m.pool), nil
}

// newTLSConfig is the mutual-TLS config of a node with certificate pair in a cluster whose CA
// certificates are in pool.
func newTLSConfig(pair tls.Certificate, pool *x509.CertPool) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{pair},
		RootCAs:      pool,
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS13,
		// Certificates are made before the nodes have addresses (containers get theirs when
		// they start), so a peer's identity is "signed by the cluster CA", not a host name.
		// InsecureSkipVerify turns off only the client's check, which includes the host name;
		// VerifyConnection puts the chain check back without it. The server side is checked
		// by crypto/tls itself: RequireAndVerifyClientCert against ClientCAs.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.VerifiedChains) > 0 {
				// crypto/tls verified the chain already: always so on the server side (with
				// RequireAndVerifyClientCert), and on the client side without InsecureSkipVerify.
				return nil
			}
			return verifyPeer(cs.PeerCertificates, pool, x509.ExtKeyUsageServerAuth)
		},
	}
}

// verifyPeer checks that the certificates a peer sent chain to a CA in pool, are in date and
// allow usage, whatever names they carry.
func verifyPeer(certs []*x509.Certificate, pool *x509.CertPool, usage x509.ExtKeyUsage) error {
	if len(certs) == 0 {
		return fmt.Errorf("%w: the peer sent no certificate", ErrTLS)
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}})
	if err != nil {
		return fmt.Errorf("%w: peer certificate %q refused: %w", ErrTLS, certs[0].Subject.CommonName, err)
	}
	return nil
}

// tlsMaterial is what TLSFiles load into: the pair a node presents and the CAs it trusts.
type tlsMaterial struct {
	pair tls.Certificate
	pool *x509.CertPool
}

func (f TLSFiles) load() (tlsMaterial, error) {
	if !f.Enabled() {
		return tlsMaterial{}, nil
	}
	for _, m := range []struct{ file, what string }{{f.Cert, "certificate"}, {f.Key, "key"}, {f.CA, "CA certificate"}} {
		if m.file == "" {
			return tlsMaterial{}, fmt.Errorf("%w: the certificate, key and CA files go together and the %s is not given (make all three with `wkd certs`)", ErrTLS, m.what)
		}
	}
	certs, err := readCerts(f.Cert, "certificate")
	if err != nil {
		return tlsMaterial{}, err
	}
	key, err := readKey(f.Key)
	if err != nil {
		return tlsMaterial{}, err
	}
	cas, err := readCerts(f.CA, "CA certificate")
	if err != nil {
		return tlsMaterial{}, err
	}
	leaf := certs[0]
	if !samePublicKey(key.Public(), leaf.PublicKey) {
		return tlsMaterial{}, fmt.Errorf("%w: the key in %s is not the key of the certificate in %s: give the -key.pem file made with it", ErrTLS, f.Key, f.Cert)
	}
	pool := x509.NewCertPool()
	for _, ca := range cas {
		if !ca.IsCA {
			return tlsMaterial{}, fmt.Errorf("%w: %s holds %q, which is not a CA certificate: give the CA's certificate (%s)", ErrTLS, f.CA, ca.Subject.CommonName, CAFile)
		}
		pool.AddCert(ca)
	}
	now := time.Now()
	if now.After(leaf.NotAfter) {
		return tlsMaterial{}, fmt.Errorf("%w: the certificate in %s expired on %s: issue a new one with `wkd certs --nodes %s --overwrite`", ErrTLS, f.Cert, leaf.NotAfter.Format(time.DateOnly), leaf.Subject.CommonName)
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	opts := x509.VerifyOptions{Roots: pool, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
	if _, err := leaf.Verify(opts); err != nil {
		return tlsMaterial{}, fmt.Errorf("%w: the certificate in %s is not accepted by the CA in %s (%w): issue it with `wkd certs` in the folder of that CA", ErrTLS, f.Cert, f.CA, err)
	}
	pair := tls.Certificate{PrivateKey: key, Leaf: leaf}
	for _, c := range certs {
		pair.Certificate = append(pair.Certificate, c.Raw)
	}
	return tlsMaterial{pair: pair, pool: pool}, nil
}

func samePublicKey(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

// fileError is an error reading file, which holds what; a missing file gets a hint.
func fileError(what, file string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err // the path is in the message already
	}
	hint := ""
	if errors.Is(err, fs.ErrNotExist) {
		hint = " (make the cluster's certificates with `wkd certs`)"
	}
	return fmt.Errorf("%w: %s %s: %w%s", ErrTLS, what, file, err, hint)
}

// readCerts reads the PEM certificates in file, which holds what (for messages).
func readCerts(file, what string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fileError(what, file, err)
	}
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		if strings.HasSuffix(block.Type, "PRIVATE KEY") {
			return nil, fmt.Errorf("%w: %s %s holds a private key: give the certificate (NAME.pem), not its key (NAME-key.pem)", ErrTLS, what, file)
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fileError(what, file, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%w: %s %s holds no PEM certificate", ErrTLS, what, file)
	}
	return certs, nil
}

// readKey reads the first PEM private key in file.
func readKey(file string) (crypto.Signer, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fileError("key", file, err)
	}
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return nil, fmt.Errorf("%w: key %s holds no PEM private key", ErrTLS, file)
		}
		if block.Type == "CERTIFICATE" {
			return nil, fmt.Errorf("%w: key %s holds a certificate: give its key (NAME-key.pem), not the certificate", ErrTLS, file)
		}
		if !strings.HasSuffix(block.Type, "PRIVATE KEY") {
			continue
		}
		key, err := parseKey(block.Bytes)
		if err != nil {
			return nil, fileError("key", file, err)
		}
		return key, nil
	}
}

// parseKey parses a DER private key: PKCS#8 as wkd writes it, or SEC 1 and PKCS#1 as openssl may.
func parseKey(der []byte) (crypto.Signer, error) {
	if k, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("a %T cannot sign", k)
		}
		return s, nil
	}
	if k, err := x509.ParseECPrivateKey(der); err == nil {
		return k, nil
	}
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return k, nil
	}
	return nil, errors.New("not a PKCS#8, EC or RSA private key")
}

// KeyPair is a certificate and its private key.
type KeyPair struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// WriteFiles writes the certificate to certFile (mode 0644) and the key, PKCS#8, to keyFile
// (mode 0600), each PEM, replacing what was there; each file is whole or absent, never half
// written.
func (p KeyPair) WriteFiles(certFile, keyFile string) error {
	der, err := x509.MarshalPKCS8PrivateKey(p.Key)
	if err != nil {
		return fmt.Errorf("%w: key for %s: %w", ErrTLS, keyFile, err)
	}
	if err := atomicfile.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return fmt.Errorf("%w: %w", ErrTLS, err)
	}
	if err := atomicfile.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.Cert.Raw}), 0o644); err != nil {
		return fmt.Errorf("%w: %w", ErrTLS, err)
	}
	return nil
}

// CA is a cluster's private certificate authority: it signs the certificates of the cluster's
// nodes and clients, and a peer is trusted if and only if the CA signed its certificate.
type CA struct{ KeyPair }

// NewCA makes a CA: an ECDSA P-256 key and a self-signed certificate named name, valid from a
// few minutes ago for validFor. It signs certificates only, not other CAs.
func NewCA(name string, validFor time.Duration) (*CA, error) {
	if validFor <= 0 {
		return nil, fmt.Errorf("%w: CA validity %v must be positive", ErrTLS, validFor)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTLS, err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"wkd"}},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(validFor),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("%w: CA certificate: %w", ErrTLS, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("%w: CA certificate: %w", ErrTLS, err)
	}
	return &CA{KeyPair{Cert: cert, Key: key}}, nil
}

// LoadCA reads a CA that NewCA made and WriteFiles wrote (ca.pem and ca-key.pem), to issue
// more certificates with it.
func LoadCA(certFile, keyFile string) (*CA, error) {
	certs, err := readCerts(certFile, "CA certificate")
	if err != nil {
		return nil, err
	}
	key, err := readKey(keyFile)
	if err != nil {
		return nil, err
	}
	cert := certs[0]
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("%w: %s holds %q, which is not a CA certificate", ErrTLS, certFile, cert.Subject.CommonName)
	}
	if !samePublicKey(key.Public(), cert.PublicKey) {
		return nil, fmt.Errorf("%w: the key in %s is not the key of the CA certificate in %s", ErrTLS, keyFile, certFile)
	}
	return &CA{KeyPair{Cert: cert, Key: key}}, nil
}

// Issue makes a new key and a certificate for name, signed by ca and valid from a few minutes
// ago for validFor (not beyond the CA's own expiry), for use as both TLS server and client.
// Its names are name, "localhost", 127.0.0.1 and hosts (DNS names or IP addresses); peers do
// not check them (see TLSFiles.Config), but other TLS clients may.
func (ca *CA) Issue(name string, hosts []string, validFor time.Duration) (KeyPair, error) {
	tmpl, err := leafTemplate(name, hosts, time.Now(), validFor)
	if err != nil {
		return KeyPair{}, err
	}
	if tmpl.NotAfter.After(ca.Cert.NotAfter) {
		return KeyPair{}, fmt.Errorf("%w: a certificate valid for %v would outlive its CA, valid until %s", ErrTLS, validFor, ca.Cert.NotAfter.Format(time.DateOnly))
	}
	return ca.sign(tmpl)
}

// leafTemplate is the certificate Issue makes for name, valid from now (less clockSkew) for
// validFor.
func leafTemplate(name string, hosts []string, now time.Time, validFor time.Duration) (*x509.Certificate, error) {
	if name == "" {
		return nil, fmt.Errorf("%w: a certificate needs a name", ErrTLS)
	}
	if validFor <= 0 {
		return nil, fmt.Errorf("%w: certificate validity %v must be positive", ErrTLS, validFor)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name, Organization: []string{"wkd"}},
		NotBefore:    now.Add(-clockSkew),
		NotAfter:     now.Add(validFor),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	seen := map[string]bool{}
	for _, h := range append([]string{name, "localhost", "127.0.0.1"}, hosts...) {
		if seen[h] {
			continue
		}
		seen[h] = true
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h == name || isDNSName(h) {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		} else {
			return nil, fmt.Errorf("%w: host %q is neither an IP address nor a DNS name", ErrTLS, h)
		}
	}
	return tmpl, nil
}

// sign makes a fresh ECDSA P-256 key and signs tmpl for it.
func (ca *CA) sign(tmpl *x509.Certificate) (KeyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return KeyPair{}, fmt.Errorf("%w: %w", ErrTLS, err)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return KeyPair{}, fmt.Errorf("%w: certificate %q: %w", ErrTLS, tmpl.Subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return KeyPair{}, fmt.Errorf("%w: certificate %q: %w", ErrTLS, tmpl.Subject.CommonName, err)
	}
	return KeyPair{Cert: cert, Key: key}, nil
}

// newSerial is a random 128-bit serial number, never zero.
func newSerial() (*big.Int, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTLS, err)
	}
	n := new(big.Int).SetBytes(b)
	if n.Sign() == 0 {
		n.SetInt64(1) // RFC 5280: positive
	}
	return n, nil
}

// isDNSName reports whether h is a host name: dot-separated labels of letters, digits and
// inner hyphens, each at most 63 long.
func isDNSName(h string) bool {
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range []byte(label) {
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}
