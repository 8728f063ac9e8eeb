package node

import (
	"bufio"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

func startTestNATS(t *testing.T, port int) *NATSServer {
	t.Helper()
	cfg := DefaultNATSConfig()
	cfg.Port = port
	cfg.Token = "s3cret"
	s, err := StartNATS(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

func TestNATSRequiresAuth(t *testing.T) {
	cfg := DefaultNATSConfig()
	cfg.Port = 0
	if _, err := StartNATS(cfg); !errors.Is(err, ErrNoAuth) {
		t.Fatalf("server without auth: %v", err)
	}
	s := startTestNATS(t, 0)

	if _, err := Connect(s.ClientURL(), Creds{}); !errors.Is(err, nats.ErrAuthorization) || !errors.Is(err, ErrNATS) {
		t.Fatalf("no creds: %v, want authorization violation", err)
	}
	if _, err := Connect(s.ClientURL(), Creds{Token: "wrong"}); !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("wrong token: %v", err)
	}

	good, err := Connect(s.ClientURL(), Creds{Token: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	sub, err := good.SubscribeSync("x")
	if err != nil {
		t.Fatal(err)
	}
	if err := SetPendingLimits(sub); err != nil {
		t.Fatal(err)
	}
	good.Flush()

	// A raw client without credentials: its SUB and PUB are refused and the line closed.
	c, err := net.Dial("tcp", strings.TrimPrefix(s.ClientURL(), "nats://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	if info, _ := r.ReadString('\n'); !strings.HasPrefix(info, "INFO") {
		t.Fatalf("greeting %q", info)
	}
	c.Write([]byte("CONNECT {\"verbose\":false}\r\nSUB x 1\r\nPUB x 5\r\nintru\r\nPING\r\n"))
	var got []string
	for {
		line, err := r.ReadString('\n')
		if line != "" {
			got = append(got, strings.TrimSpace(line))
		}
		if err != nil {
			break
		}
	}
	if len(got) == 0 || !strings.Contains(got[0], "Authorization Violation") {
		t.Fatalf("unauthenticated client got %q", got)
	}
	for _, l := range got {
		if l == "PONG" || strings.HasPrefix(l, "MSG") {
			t.Fatalf("unauthenticated client was served: %q", got)
		}
	}
	if m, err := sub.NextMsg(200 * time.Millisecond); err == nil {
		t.Fatalf("unauthenticated publish arrived: %q", m.Data)
	}

	// The authenticated client works both ways.
	if err := good.Publish("x", []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if m, err := sub.NextMsg(2 * time.Second); err != nil || string(m.Data) != "hello" {
		t.Fatalf("token client: %v %v", m, err)
	}
}

func TestNATSReconnectsAfterRestart(t *testing.T) {
	s := startTestNATS(t, 0)
	port, url := s.Port(), s.ClientURL()
	reconnected := make(chan struct{}, 1)
	nc, err := Connect(url, Creds{Token: "s3cret"}, nats.ReconnectHandler(func(*nats.Conn) {
		select {
		case reconnected <- struct{}{}:
		default:
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync("after")
	if err != nil {
		t.Fatal(err)
	}
	s.Shutdown()

	s2 := startTestNATS(t, port) // same port
	select {
	case <-reconnected:
	case <-time.After(5 * time.Second):
		t.Fatalf("client did not reconnect to the restarted server (status %v)", nc.Status())
	}
	// Subscriptions are replayed on reconnect.
	other, err := Connect(s2.ClientURL(), Creds{Token: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	nc.Flush()
	other.Publish("after", []byte("back"))
	if m, err := sub.NextMsg(2 * time.Second); err != nil || string(m.Data) != "back" {
		t.Fatalf("after restart: %v %v", m, err)
	}
}

func TestNATSConfigValidate(t *testing.T) {
	for i, c := range []NATSConfig{
		{Port: -1, Token: "t"},
		{Token: "t", User: "u", Password: "p"},
		{User: "u"},
		{NKey: "Sxxx"},
	} {
		if err := c.Validate(); !errors.Is(err, ErrBadConfig) {
			t.Errorf("case %d: %v", i, err)
		}
	}
	if err := (NATSConfig{InsecureNoAuth: true}).Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestNATSUserPasswordAndNKey(t *testing.T) {
	cfg := DefaultNATSConfig()
	cfg.Port, cfg.User, cfg.Password = 0, "wkd", "pw"
	s, err := StartNATS(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()
	if _, err := Connect(s.ClientURL(), Creds{User: "wkd", Password: "nope"}); !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("wrong password: %v", err)
	}
	nc, err := Connect(s.ClientURL(), Creds{User: "wkd", Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()

	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	seedFile := filepath.Join(t.TempDir(), "user.nk")
	os.WriteFile(seedFile, seed, 0o600)
	cfg = DefaultNATSConfig()
	cfg.Port, cfg.NKey = 0, pub
	s2, err := StartNATS(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Shutdown()
	if _, err := Connect(s2.ClientURL(), Creds{}); !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("nkey server, no creds: %v", err)
	}
	nc, err = Connect(s2.ClientURL(), Creds{NKeySeedFile: seedFile})
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
}

func TestLoadToken(t *testing.T) {
	t.Setenv(NATSTokenEnv, "from-env")
	f := filepath.Join(t.TempDir(), "tok")
	os.WriteFile(f, []byte("from-file\nignored\n"), 0o600)
	for _, c := range []struct{ flag, file, want string }{{"from-flag", f, "from-flag"}, {"", f, "from-file"}, {"", "", "from-env"}} {
		if got, err := LoadToken(c.flag, c.file); err != nil || got != c.want {
			t.Errorf("LoadToken(%q, %q) = %q, %v; want %q", c.flag, c.file, got, err, c.want)
		}
	}
	if _, err := LoadToken("", filepath.Join(t.TempDir(), "missing")); !errors.Is(err, ErrNoAuth) {
		t.Fatalf("missing token file: %v", err)
	}
}
