// Package identity is a node's cryptographic identity: an Ed25519 private key
// and a self-signed X.509 certificate kept in the data directory, and the
// node ID derived from them.
//
// A node ID is the SHA-256 digest of the certificate's SubjectPublicKeyInfo,
// so it names the key, not the certificate: a certificate re-issued for the
// same key (new validity, new name) keeps the ID that peers have pinned. Peers
// authenticate each other by that ID alone; certificate chains, names and
// expiry play no part.
//
// Invariants:
//   - An identity, once written, is never overwritten: Create on a directory
//     that holds one returns the existing identity unchanged.
//   - The key file is written with mode 0600 under a temporary name, flushed
//     and linked into place, so a crash never leaves a truncated key and two
//     concurrent Create calls cannot both win.
//   - The text form of a node ID carries a check character per group, so a
//     mistyped ID in a configuration file is an error, not a silently
//     different peer.
package identity
