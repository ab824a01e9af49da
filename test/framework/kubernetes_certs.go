//go:build linux

package framework

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"time"
)

// writeCerts writes a CA, the API server's serving certificate (for node 0's address, the
// kubernetes Service's and its names), an admin's client certificate, the service account
// signing key pair, and the admin's kubeconfig.
func (c *Cluster) writeCerts() {
	c.T.Helper()
	ca, caKey := c.cert("ca", nil, nil, &x509.Certificate{
		Subject: pkix.Name{CommonName: "cnishim-e2e-ca"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	})
	c.cert("apiserver", ca, caKey, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		DNSNames: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
			"kubernetes.default.svc." + clusterDomain},
		IPAddresses: []net.IP{net.ParseIP(c.Nodes[0].IP), net.ParseIP(kubernetesServiceIP), net.ParseIP("127.0.0.1")},
	})
	c.cert("admin", ca, caKey, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "kubernetes-admin", Organization: []string{"system:masters"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
	})
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		c.T.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		c.T.Fatal(err)
	}
	c.writePEM("sa.key", "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(key))
	c.writePEM("sa.pub", "PUBLIC KEY", pub)
	c.Kubeconfig = c.path("admin.kubeconfig")
	kubeconfig := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: cnishim-e2e
  cluster:
    server: https://%s:6443
    certificate-authority: %s
users:
- name: admin
  user:
    client-certificate: %s
    client-key: %s
contexts:
- name: cnishim-e2e
  context:
    cluster: cnishim-e2e
    user: admin
current-context: cnishim-e2e
`, c.Nodes[0].IP, c.path("ca.crt"), c.path("admin.crt"), c.path("admin.key"))
	if err := os.WriteFile(c.Kubeconfig, []byte(kubeconfig), 0o600); err != nil {
		c.T.Fatal(err)
	}
}

// cert writes name.crt and name.key: tmpl signed by parent's key, or self-signed without one.
func (c *Cluster) cert(name string, parent *x509.Certificate, parentKey *rsa.PrivateKey, tmpl *x509.Certificate) (*x509.Certificate, *rsa.PrivateKey) {
	c.T.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		c.T.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		c.T.Fatal(err)
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(7 * 24 * time.Hour)
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		c.T.Fatal(err)
	}
	c.writePEM(name+".crt", "CERTIFICATE", der)
	c.writePEM(name+".key", "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(key))
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		c.T.Fatal(err)
	}
	return cert, key
}

func (c *Cluster) writePEM(name, typ string, der []byte) {
	c.T.Helper()
	if err := os.WriteFile(c.path(name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		c.T.Fatal(err)
	}
}
