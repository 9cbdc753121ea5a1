package identity

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestCreateLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	id, created, err := Create(dir, "web1")
	if err != nil || !created {
		t.Fatalf("Create = %v, %v", created, err)
	}
	if id.Name != "web1" || id.ID.IsZero() {
		t.Fatalf("Create returned %+v", id)
	}
	if got := FromCertificate(id.Certificate.Leaf); got != id.ID {
		t.Fatalf("ID %v is not derived from the certificate (%v)", id.ID, got)
	}
	for file, want := range map[string]os.FileMode{KeyFile: 0o600, CertFile: 0o644} {
		st, err := os.Stat(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s has mode %v, want %v", file, st.Mode().Perm(), want)
		}
	}
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("data dir mode = %v, %v; want 0700", st.Mode().Perm(), err)
	}
	loaded, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if loaded.ID != id.ID || loaded.Name != "web1" {
		t.Fatalf("Load = %v %q, want %v web1", loaded.ID, loaded.Name, id.ID)
	}
	// The TLS certificate is usable: it signs with the key it names.
	sig := ed25519.Sign(loaded.Certificate.PrivateKey.(ed25519.PrivateKey), []byte("m"))
	if !ed25519.Verify(loaded.Certificate.Leaf.PublicKey.(ed25519.PublicKey), []byte("m"), sig) {
		t.Fatal("certificate and key do not belong together")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Fatalf("data dir holds %d entries, want the 2 identity files (temporary files left?)", len(entries))
	}
}

func TestCreateNeverOverwrites(t *testing.T) {
	dir := t.TempDir()
	first, _, err := Create(dir, "web1")
	if err != nil {
		t.Fatal(err)
	}
	key, _ := os.ReadFile(filepath.Join(dir, KeyFile))
	again, created, err := Create(dir, "other-name")
	if err != nil {
		t.Fatal(err)
	}
	if created || again.ID != first.ID || again.Name != "web1" {
		t.Fatalf("second Create = %v %q created=%v, want the first identity unchanged", again.ID, again.Name, created)
	}
	if key2, _ := os.ReadFile(filepath.Join(dir, KeyFile)); string(key2) != string(key) {
		t.Fatal("key file was rewritten")
	}
}

func TestCreateCompletesInterruptedIdentity(t *testing.T) {
	dir := t.TempDir()
	first, _, err := Create(dir, "web1")
	if err != nil {
		t.Fatal(err)
	}
	// A crash between writing the key and the certificate.
	if err := os.Remove(filepath.Join(dir, CertFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir); err == nil || errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), CertFile+" is missing") {
		t.Fatalf("Load of a key without certificate = %v", err)
	}
	again, created, err := Create(dir, "web1")
	if err != nil {
		t.Fatal(err)
	}
	if created || again.ID != first.ID {
		t.Fatalf("completed identity = %v created=%v, want ID %v kept", again.ID, created, first.ID)
	}
}

func TestCreateRefusesOrphanCertificate(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := Create(dir, "web1"); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, KeyFile))
	_, _, err := Create(dir, "web1")
	if err == nil || !strings.Contains(err.Error(), "refusing") {
		t.Fatalf("Create over an orphan certificate = %v, want refusal", err)
	}
	if _, err := os.Stat(filepath.Join(dir, KeyFile)); err == nil {
		t.Fatal("a new key was written beside the orphan certificate")
	}
}

func TestCreateConcurrent(t *testing.T) {
	dir := t.TempDir()
	var wg sync.WaitGroup
	ids := make([]NodeID, 8)
	errs := make([]error, len(ids))
	for i := range ids {
		wg.Go(func() {
			id, _, err := Create(dir, "web1")
			ids[i], errs[i] = id.ID, err
		})
	}
	wg.Wait()
	for i := range ids {
		if errs[i] != nil {
			t.Fatalf("Create #%d: %v", i, errs[i])
		}
		if ids[i] != ids[0] {
			t.Fatalf("concurrent Create calls returned different IDs: %v and %v", ids[0], ids[i])
		}
	}
}

func TestCreateBadName(t *testing.T) {
	for _, name := range []string{strings.Repeat("n", MaxNameLen+1), "a\nb", "\xff"} {
		if _, _, err := Create(t.TempDir(), name); err == nil {
			t.Errorf("Create with name %q succeeded", name)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(dir); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("Load(empty) = %v, want ErrNotFound naming %s", err, dir)
	}
	a, b := t.TempDir(), t.TempDir()
	if _, _, err := Create(a, "a"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Create(b, "b"); err != nil {
		t.Fatal(err)
	}
	// b's key with a's certificate.
	cert, _ := os.ReadFile(filepath.Join(a, CertFile))
	os.WriteFile(filepath.Join(b, CertFile), cert, 0o644)
	if _, err := Load(b); err == nil || !strings.Contains(err.Error(), "does not belong") {
		t.Fatalf("Load of mismatched files = %v", err)
	}
	os.WriteFile(filepath.Join(b, KeyFile), []byte("garbage"), 0o600)
	if _, err := Load(b); err == nil || !strings.Contains(err.Error(), KeyFile) {
		t.Fatalf("Load of a garbage key = %v", err)
	}
}

func TestSelfSignedCertificate(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	der, err := selfSign(key, "web9", now)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := cert.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature); err != nil {
		t.Fatalf("not self-signed: %v", err)
	}
	if cert.NotBefore.After(now) || cert.NotAfter.Before(now.AddDate(50, 0, 0)) {
		t.Fatalf("validity %v–%v does not cover now and the coming decades", cert.NotBefore, cert.NotAfter)
	}
	if cert.Subject.CommonName != "web9" {
		t.Fatalf("common name %q", cert.Subject.CommonName)
	}
}

func FuzzParseFiles(f *testing.F) {
	dir := f.TempDir()
	if _, _, err := Create(dir, "seed"); err != nil {
		f.Fatal(err)
	}
	key, _ := os.ReadFile(filepath.Join(dir, KeyFile))
	cert, _ := os.ReadFile(filepath.Join(dir, CertFile))
	f.Add(key, cert)
	f.Add(key, key)
	f.Add([]byte{}, cert)
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{0x30, 0x03}}), cert)
	f.Fuzz(func(t *testing.T, key, cert []byte) {
		id, err := parse(key, cert)
		if err != nil {
			return
		}
		if id.Certificate.Leaf == nil || FromCertificate(id.Certificate.Leaf) != id.ID {
			t.Fatal("parse succeeded without a consistent certificate and ID")
		}
	})
}
