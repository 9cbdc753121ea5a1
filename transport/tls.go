package transport

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"

	"lockstep/identity"
	"lockstep/protocol"
)

// errRefused marks a handshake this node refused: unknown or unexpected
// peer identity, or a foreign protocol version.
var errRefused = errors.New("peer refused")

// peerID returns the node ID of the certificate the peer presented.
func peerID(cs tls.ConnectionState) (identity.NodeID, error) {
	if len(cs.PeerCertificates) == 0 {
		return identity.NodeID{}, errors.New("no certificate presented")
	}
	return identity.FromCertificate(cs.PeerCertificates[0]), nil
}

// serverTLS is the listener's configuration. Chain verification is off
// (RequireAnyClientCert); VerifyConnection instead checks the client's ID
// against the pinned peers. GetConfigForClient exists to learn the remote
// address, so that a refusal can name it.
func (t *Transport) serverTLS() *tls.Config {
	base := &tls.Config{
		MinVersion:             tls.VersionTLS13,
		Certificates:           []tls.Certificate{t.cfg.Identity.Certificate},
		ClientAuth:             tls.RequireAnyClientCert,
		NextProtos:             []string{t.alpn},
		SessionTicketsDisabled: true, // every connection presents and checks a certificate
	}
	cfg := base.Clone()
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		var remote net.Addr
		if hello.Conn != nil {
			remote = hello.Conn.RemoteAddr()
		}
		if !slices.Contains(hello.SupportedProtos, t.alpn) {
			// The handshake fails with no_application_protocol; the
			// client reports a version mismatch.
			t.log.Warn("refused connection: protocol version mismatch", "addr", remote,
				"op", "accept", "offered", hello.SupportedProtos, "want", t.alpn)
		}
		c := base.Clone()
		c.VerifyConnection = func(cs tls.ConnectionState) error {
			id, err := peerID(cs)
			if err != nil {
				t.log.Warn("refused connection", "addr", remote, "op", "accept", "err", err)
				return fmt.Errorf("%w: %v", errRefused, err)
			}
			if t.lookup(id) == nil {
				t.log.Warn("refused connection from unknown node", "addr", remote, "peer", id.String(), "op", "accept")
				return fmt.Errorf("%w: node %s is not a configured peer", errRefused, id)
			}
			return nil
		}
		return c, nil
	}
	return cfg
}

// clientTLS is the configuration for dialing p: the server must present
// p's pinned ID. presented receives the ID the server showed, for the error.
func (t *Transport) clientTLS(p Peer, presented *identity.NodeID) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		Certificates:       []tls.Certificate{t.cfg.Identity.Certificate},
		NextProtos:         []string{t.alpn},
		ServerName:         "lockstep",
		InsecureSkipVerify: true, // replaced by the pinned-ID check below
		VerifyConnection: func(cs tls.ConnectionState) error {
			id, err := peerID(cs)
			if err != nil {
				return fmt.Errorf("%w: %v", errRefused, err)
			}
			*presented = id
			if id != p.ID {
				return fmt.Errorf("%w: expected node %s, it presented %s", errRefused, p.ID, id)
			}
			if cs.NegotiatedProtocol != t.alpn {
				return fmt.Errorf("%w: %w: negotiated %q, want %q", errRefused, protocol.ErrVersion, cs.NegotiatedProtocol, t.alpn)
			}
			return nil
		},
	}
}

// tlsAlertNoApplicationProtocol is the TLS alert sent when ALPN fails; QUIC
// carries alerts as CRYPTO_ERROR 0x100+alert.
const tlsAlertNoApplicationProtocol = 120
