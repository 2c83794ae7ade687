package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// pki holds the file locations of everything the control plane needs. All
// material is generated once per data dir and reused on restart.
type pki struct {
	dir string

	caCert, caKey           string
	servingCert, servingKey string
	adminCert, adminKey     string
	kcmCert, kcmKey         string
	proxyCert, proxyKey     string
	saKey, saPub            string
}

func newPKI(dir string) *pki {
	p := func(name string) string { return filepath.Join(dir, name) }
	return &pki{
		dir:         dir,
		caCert:      p("ca.crt"),
		caKey:       p("ca.key"),
		servingCert: p("apiserver.crt"),
		servingKey:  p("apiserver.key"),
		adminCert:   p("admin.crt"),
		adminKey:    p("admin.key"),
		kcmCert:     p("controller-manager.crt"),
		kcmKey:      p("controller-manager.key"),
		proxyCert:   p("front-proxy-client.crt"),
		proxyKey:    p("front-proxy-client.key"),
		saKey:       p("sa.key"),
		saPub:       p("sa.pub"),
	}
}

const certValidity = 10 * 365 * 24 * time.Hour

// ensure creates any missing key material. The serving certificate is
// regenerated when its SANs do not cover the requested hosts.
func (p *pki) ensure(serviceIP net.IP) error {
	if err := os.MkdirAll(p.dir, 0o700); err != nil {
		return err
	}
	caCert, caKey, err := p.loadOrCreateCA()
	if err != nil {
		return fmt.Errorf("CA: %w", err)
	}
	ips := []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1"), serviceIP}
	dns := []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}
	if !p.servingCertCovers(ips) {
		if err := p.issue(caCert, caKey, p.servingCert, p.servingKey, pkix.Name{CommonName: "kube-apiserver"},
			[]x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, ips, dns); err != nil {
			return fmt.Errorf("serving cert: %w", err)
		}
	}
	clients := []struct {
		cert, key string
		subject   pkix.Name
	}{
		{p.adminCert, p.adminKey, pkix.Name{CommonName: "llmfleet-admin", Organization: []string{"system:masters"}}},
		{p.kcmCert, p.kcmKey, pkix.Name{CommonName: "system:kube-controller-manager"}},
		{p.proxyCert, p.proxyKey, pkix.Name{CommonName: "front-proxy-client"}},
	}
	for _, c := range clients {
		if fileExists(c.cert) && fileExists(c.key) {
			continue
		}
		if err := p.issue(caCert, caKey, c.cert, c.key, c.subject,
			[]x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil, nil); err != nil {
			return fmt.Errorf("client cert %s: %w", c.subject.CommonName, err)
		}
	}
	if !fileExists(p.saKey) || !fileExists(p.saPub) {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return err
		}
		if err := writeKey(p.saKey, key); err != nil {
			return err
		}
		der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
		if err != nil {
			return err
		}
		if err := writePEM(p.saPub, "PUBLIC KEY", der, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func (p *pki) loadOrCreateCA() (*x509.Certificate, crypto.Signer, error) {
	if fileExists(p.caCert) && fileExists(p.caKey) {
		pair, err := tls.LoadX509KeyPair(p.caCert, p.caKey)
		if err != nil {
			return nil, nil, err
		}
		cert, err := x509.ParseCertificate(pair.Certificate[0])
		if err != nil {
			return nil, nil, err
		}
		signer, ok := pair.PrivateKey.(crypto.Signer)
		if !ok {
			return nil, nil, errors.New("CA key is not a signer")
		}
		return cert, signer, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "llmfleet-controlplane-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(certValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	if err := writeKey(p.caKey, key); err != nil {
		return nil, nil, err
	}
	if err := writePEM(p.caCert, "CERTIFICATE", der, 0o644); err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}

func (p *pki) servingCertCovers(ips []net.IP) bool {
	if !fileExists(p.servingKey) {
		return false
	}
	data, err := os.ReadFile(p.servingCert)
	if err != nil {
		return false
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return false
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil || time.Now().After(cert.NotAfter) {
		return false
	}
	for _, want := range ips {
		found := false
		for _, have := range cert.IPAddresses {
			if have.Equal(want) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func (p *pki) issue(ca *x509.Certificate, caKey crypto.Signer, certFile, keyFile string, subject pkix.Name,
	usage []x509.ExtKeyUsage, ips []net.IP, dns []string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               subject,
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(certValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           usage,
		BasicConstraintsValid: true,
		IPAddresses:           ips,
		DNSNames:              dns,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	if err := writeKey(keyFile, key); err != nil {
		return err
	}
	return writePEM(certFile, "CERTIFICATE", der, 0o644)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		panic(err)
	}
	return n
}

func writeKey(path string, key crypto.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return writePEM(path, "PRIVATE KEY", der, 0o600)
}

func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	return writeFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode)
}

// writeFileAtomic writes via a temp file + rename so pollers never observe a
// partially written file.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
