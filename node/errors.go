package node

import "errors"

var (
	// ErrNoKey: no gossip key was given (Config.GossipKey, Config.GossipKeyFile or WKD_GOSSIP_KEY).
	ErrNoKey = errors.New("node: no gossip key: set WKD_GOSSIP_KEY (base64) or a key file")
	// ErrBadKey: the gossip key is not valid base64 or not 16, 24 or 32 bytes long.
	ErrBadKey = errors.New("node: bad gossip key: need 16, 24 or 32 bytes (base64)")
	// ErrBadConfig: a Config or NATSConfig field is out of range; the message names the field.
	ErrBadConfig = errors.New("node: bad config")
	// ErrJoin: none of the seed addresses could be joined (unreachable, or another gossip key).
	ErrJoin = errors.New("node: cannot join cluster")
	// ErrClosed: the node was shut down.
	ErrClosed = errors.New("node: shut down")
	// ErrNoAuth: a NATS server or client was asked to run without credentials.
	ErrNoAuth = errors.New("node: NATS needs a token, user/password or nkey")
	// ErrNATS: the embedded NATS server did not start or a connection could not be made.
	ErrNATS = errors.New("node: NATS")
)
