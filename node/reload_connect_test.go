package node

import (
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
)

// A server reloading its routes (SetRoutes) re-checks its clients, and one in the middle of
// its handshake may be cut off. Connect tries again: here the first two connections are
// closed at once by a proxy in front of the server, and the third gets through.
func TestConnectRetriesACutHandshake(t *testing.T) {
	s := startTestNATS(t, 0)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepted atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if accepted.Add(1) <= 2 {
				c.Close()
				continue
			}
			up, err := net.Dial("tcp", strings.TrimPrefix(s.ClientURL(), "nats://"))
			if err != nil {
				c.Close()
				continue
			}
			go func() { io.Copy(up, c); up.Close() }()
			go func() { io.Copy(c, up); c.Close() }()
		}
	}()
	nc, err := Connect("nats://"+ln.Addr().String(), Creds{Token: "s3cret"})
	if err != nil {
		t.Fatalf("Connect after two cut handshakes: %v", err)
	}
	defer nc.Close()
	if n := accepted.Load(); n != 3 {
		t.Fatalf("%d connections to connect, want 3", n)
	}
}
