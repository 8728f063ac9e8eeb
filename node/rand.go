package node

import (
	"crypto/rand"
	"encoding/hex"
)

func cryptoRand(b []byte) (int, error) { return rand.Read(b) }

// newID returns a random incarnation ID.
func newID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
