package identity

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"time"
	"unicode/utf8"
)

// The files of an identity, inside the data directory.
const (
	KeyFile  = "node-key.pem"  // PKCS#8 Ed25519 private key, mode 0600
	CertFile = "node-cert.pem" // self-signed X.509 certificate
)

// MaxNameLen bounds a node name: it is the certificate's common name, whose
// X.509 upper bound is 64.
const MaxNameLen = 64

// ErrNotFound reports a data directory that holds no identity.
var ErrNotFound = errors.New("no node identity")

// Identity is a node's key, certificate and the ID derived from them.
type Identity struct {
	ID   NodeID
	Name string // the certificate's common name, for logs and status
	// Certificate is ready for a tls.Config: the self-signed certificate,
	// its parsed Leaf and the private key.
	Certificate tls.Certificate
}

// Load reads the identity in dir. It fails with an error wrapping
// ErrNotFound when dir holds no identity at all, and with a plain error when
// the files are incomplete, unreadable or do not belong together.
func Load(dir string) (Identity, error) {
	keyPath, certPath := filepath.Join(dir, KeyFile), filepath.Join(dir, CertFile)
	keyPEM, kerr := os.ReadFile(keyPath)
	certPEM, cerr := os.ReadFile(certPath)
	switch {
	case errors.Is(kerr, fs.ErrNotExist) && errors.Is(cerr, fs.ErrNotExist):
		return Identity{}, fmt.Errorf("load identity from %s: %w", dir, ErrNotFound)
	case errors.Is(kerr, fs.ErrNotExist):
		return Identity{}, fmt.Errorf("load identity from %s: %s exists but %s is missing", dir, CertFile, KeyFile)
	case kerr != nil:
		return Identity{}, fmt.Errorf("load identity: %w", kerr)
	case errors.Is(cerr, fs.ErrNotExist):
		return Identity{}, fmt.Errorf("load identity from %s: %s exists but %s is missing (run init to complete it)", dir, KeyFile, CertFile)
	case cerr != nil:
		return Identity{}, fmt.Errorf("load identity: %w", cerr)
	}
	id, err := parse(keyPEM, certPEM)
	if err != nil {
		return Identity{}, fmt.Errorf("load identity from %s: %w", dir, err)
	}
	return id, nil
}

// Create makes dir (mode 0700 when new) and a new identity in it named name,
// or the host name when name is empty. When dir already holds an identity it
// is returned unchanged and created is false: an identity is never
// overwritten. A key left without its certificate by an interrupted Create
// is completed with a new certificate for the same key, so the ID is kept.
func Create(dir, name string) (id Identity, created bool, err error) {
	if name == "" {
		name = defaultName()
	}
	if err := CheckName(name); err != nil {
		return Identity{}, false, fmt.Errorf("create identity in %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Identity{}, false, fmt.Errorf("create identity: %w", err)
	}
	keyPath, certPath := filepath.Join(dir, KeyFile), filepath.Join(dir, CertFile)

	key, keyPEM, err := readKey(keyPath)
	if errors.Is(err, fs.ErrNotExist) {
		if _, cerr := os.Lstat(certPath); cerr == nil {
			// A concurrent Create writes the key before the certificate:
			// a certificate seen after a missing key may be its work, so
			// the key is looked for once more, after the certificate was
			// seen, before refusing.
			key, keyPEM, err = readKey(keyPath)
			if errors.Is(err, fs.ErrNotExist) {
				return Identity{}, false, fmt.Errorf("create identity in %s: %s exists without %s; refusing to replace it with a new identity (move it away first)", dir, CertFile, KeyFile)
			}
		}
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// No key, and no certificate when last looked: a certificate a
		// concurrent Create writes from now on is for the key it wrote
		// first, which writeNew finds below.
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return Identity{}, false, fmt.Errorf("create identity: generate key: %w", err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(priv)
		if err != nil {
			return Identity{}, false, fmt.Errorf("create identity: encode key: %w", err)
		}
		keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
		switch err := writeNew(keyPath, keyPEM, 0o600); {
		case err == nil:
			key, created = priv, true
		case errors.Is(err, fs.ErrExist):
			// Another Create won the race: use its key.
			if key, keyPEM, err = readKey(keyPath); err != nil {
				return Identity{}, false, fmt.Errorf("create identity: %w", err)
			}
		default:
			return Identity{}, false, fmt.Errorf("create identity: %w", err)
		}
	case err != nil:
		return Identity{}, false, fmt.Errorf("create identity: %w", err)
	}

	certPEM, err := os.ReadFile(certPath)
	if errors.Is(err, fs.ErrNotExist) {
		der, serr := selfSign(key, name, time.Now())
		if serr != nil {
			return Identity{}, false, fmt.Errorf("create identity: %w", serr)
		}
		pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
		if werr := writeNew(certPath, pemBytes, 0o644); werr != nil && !errors.Is(werr, fs.ErrExist) {
			return Identity{}, false, fmt.Errorf("create identity: %w", werr)
		}
		// Read back: a concurrent Create may have written its own
		// certificate for the same key first.
		certPEM, err = os.ReadFile(certPath)
	}
	if err != nil {
		return Identity{}, false, fmt.Errorf("create identity: %w", err)
	}
	id, err = parse(keyPEM, certPEM)
	if err != nil {
		return Identity{}, false, fmt.Errorf("create identity in %s: %w", dir, err)
	}
	return id, created, nil
}

func readKey(path string) (ed25519.PrivateKey, []byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	key, err := parseKey(b)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return key, b, nil
}

func parseKey(keyPEM []byte) (ed25519.PrivateKey, error) {
	block, _ := pem.Decode(keyPEM)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New("no PEM \"PRIVATE KEY\" block")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse private key: %w", err)
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("private key is %T, want Ed25519", k)
	}
	return key, nil
}

// parse builds an Identity from the contents of the two files. It is a pure
// function of its input, fuzzed because the files come from disk.
func parse(keyPEM, certPEM []byte) (Identity, error) {
	key, err := parseKey(keyPEM)
	if err != nil {
		return Identity{}, fmt.Errorf("%s: %w", KeyFile, err)
	}
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return Identity{}, fmt.Errorf("%s: no PEM \"CERTIFICATE\" block", CertFile)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return Identity{}, fmt.Errorf("%s: %w", CertFile, err)
	}
	pub, ok := cert.PublicKey.(ed25519.PublicKey)
	if !ok || !pub.Equal(key.Public()) {
		return Identity{}, fmt.Errorf("%s does not belong to %s (public keys differ)", CertFile, KeyFile)
	}
	return Identity{
		ID:   FromCertificate(cert),
		Name: cert.Subject.CommonName,
		Certificate: tls.Certificate{
			Certificate: [][]byte{block.Bytes},
			PrivateKey:  key,
			Leaf:        cert,
		},
	}, nil
}

// selfSign issues the node's certificate. Peers check only the key inside
// it (by its ID), so the validity period is long: expiry would only break a
// cluster without adding safety.
func selfSign(key ed25519.PrivateKey, name string, now time.Time) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("certificate serial: %w", err)
	}
	notBefore := now.Add(-time.Hour).UTC().Truncate(time.Second) // tolerate clock skew
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             notBefore,
		NotAfter:              notBefore.AddDate(100, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("self-sign certificate: %w", err)
	}
	return der, nil
}

// CheckName reports whether name can be a node name: at most MaxNameLen
// bytes of UTF-8 without control characters.
func CheckName(name string) error {
	if len(name) > MaxNameLen {
		return fmt.Errorf("node name %q is longer than %d bytes", name, MaxNameLen)
	}
	if !utf8.ValidString(name) {
		return fmt.Errorf("node name %q is not valid UTF-8", name)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("node name %q contains a control character", name)
		}
	}
	return nil
}

func defaultName() string {
	if h, err := os.Hostname(); err == nil && h != "" && CheckName(h) == nil {
		return h
	}
	return "lockstep"
}

// writeNew writes data to path atomically and only if path does not exist:
// the bytes go to a temporary file that is flushed and then hard-linked into
// place, which fails with fs.ErrExist rather than replacing a file another
// process created meanwhile.
func writeNew(path string, data []byte, perm fs.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".lockstep-tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("write %s: %w", path, fs.ErrExist)
		}
		// A filesystem without hard links: check, then rename. The window
		// between the two only matters to concurrent creators.
		if _, serr := os.Lstat(path); serr == nil {
			return fmt.Errorf("write %s: %w", path, fs.ErrExist)
		}
		if err := os.Rename(tmp, path); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
