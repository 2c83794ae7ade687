package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, " ") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

type options struct {
	dataDir        string
	port           int
	etcdPort       int
	etcdPeerPort   int
	kcmPort        int
	serviceCIDR    string
	name           string
	verbosity      int
	etcdFsync      bool
	exitWithParent bool
	waitDefaultSA  bool
	readyTimeout   time.Duration
	stopTimeout    time.Duration
	apiserverArgs  stringList
	kcmArgs        stringList
	controllers    string
}

var (
	logMu sync.Mutex
	out   io.Writer = os.Stderr
)

func logf(format string, a ...any) {
	logMu.Lock()
	defer logMu.Unlock()
	fmt.Fprintf(out, "[controlplane] %s "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, a...)...)
}

func runSupervisor(args []string) int {
	var o options
	fs := flag.NewFlagSet("llmfleet-controlplane run", flag.ContinueOnError)
	fs.StringVar(&o.dataDir, "data-dir", "", "directory for certs, etcd data, kubeconfigs (required)")
	fs.IntVar(&o.port, "port", 6443, "kube-apiserver secure port on 127.0.0.1")
	fs.IntVar(&o.etcdPort, "etcd-port", -1, "etcd client port (default: port+1)")
	fs.IntVar(&o.etcdPeerPort, "etcd-peer-port", -1, "etcd peer port (default: port+2)")
	fs.IntVar(&o.kcmPort, "controller-manager-port", -1, "kube-controller-manager secure port (default: port+3; 0 disables its HTTPS endpoint)")
	fs.StringVar(&o.serviceCIDR, "service-cluster-ip-range", "10.0.0.0/24", "service cluster IP range")
	fs.StringVar(&o.name, "name", "llmfleet-local", "cluster/context/user name used in the generated kubeconfig")
	fs.IntVar(&o.verbosity, "v", 0, "klog verbosity for kube-apiserver and kube-controller-manager")
	fs.BoolVar(&o.etcdFsync, "etcd-fsync", false, "fsync etcd writes (off by default: this is a throwaway test cluster)")
	fs.BoolVar(&o.exitWithParent, "exit-with-parent", false, "terminate when the process that started us dies (Linux only)")
	fs.BoolVar(&o.waitDefaultSA, "wait-default-serviceaccount", true, "consider the cluster ready only once default/default ServiceAccount exists")
	fs.DurationVar(&o.readyTimeout, "ready-timeout", 3*time.Minute, "give up if the control plane is not ready within this time")
	fs.DurationVar(&o.stopTimeout, "stop-timeout", 15*time.Second, "how long to wait for components to exit before SIGKILL")
	fs.Var(&o.apiserverArgs, "apiserver-arg", "extra kube-apiserver flag, e.g. --apiserver-arg=--feature-gates=Foo=true (repeatable)")
	fs.Var(&o.kcmArgs, "controller-manager-arg", "extra kube-controller-manager flag (repeatable)")
	fs.StringVar(&o.controllers, "controllers", "*", "kube-controller-manager --controllers value")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if o.dataDir == "" {
		fmt.Fprintln(os.Stderr, "--data-dir is required")
		return 2
	}
	if o.etcdPort < 0 {
		o.etcdPort = o.port + 1
	}
	if o.etcdPeerPort < 0 {
		o.etcdPeerPort = o.port + 2
	}
	if o.kcmPort < 0 {
		o.kcmPort = o.port + 3
	}
	if o.exitWithParent {
		if err := setParentDeathSignal(syscall.SIGTERM); err != nil {
			logf("warning: --exit-with-parent: %v", err)
		}
	}
	if err := run(&o); err != nil {
		logf("error: %v", err)
		return 1
	}
	return 0
}

type supervisor struct {
	o       *options
	dir     string
	pki     *pki
	server  string
	kubecfg string
	ready   string
	pidFile string

	mu       sync.Mutex
	children []*child
	exited   chan *child
}

type child struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func run(o *options) error {
	start := time.Now()
	dir, err := filepath.Abs(o.dataDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	s := &supervisor{
		o:       o,
		dir:     dir,
		pki:     newPKI(filepath.Join(dir, "pki")),
		server:  fmt.Sprintf("https://127.0.0.1:%d", o.port),
		kubecfg: filepath.Join(dir, "kubeconfig"),
		ready:   filepath.Join(dir, "ready"),
		pidFile: filepath.Join(dir, "controlplane.pid"),
		exited:  make(chan *child, 4),
	}
	// Stale markers from an earlier run must not fool waiters.
	os.Remove(s.ready)
	os.Remove(s.kubecfg)
	if err := writeFileAtomic(s.pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return err
	}
	defer os.Remove(s.pidFile)
	defer os.Remove(s.ready)

	for _, p := range []struct {
		what string
		port int
	}{{"kube-apiserver", o.port}, {"etcd client", o.etcdPort}, {"etcd peer", o.etcdPeerPort}, {"kube-controller-manager", o.kcmPort}} {
		if p.port == 0 && p.what == "kube-controller-manager" {
			continue
		}
		if err := checkPortFree(p.port); err != nil {
			return fmt.Errorf("%s port %d: %w", p.what, p.port, err)
		}
	}

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		sig := <-sigs
		logf("received %v, shutting down", sig)
		cancel()
	}()

	_, svcNet, err := net.ParseCIDR(o.serviceCIDR)
	if err != nil {
		return fmt.Errorf("--service-cluster-ip-range: %w", err)
	}
	firstIP := make(net.IP, len(svcNet.IP))
	copy(firstIP, svcNet.IP)
	firstIP[len(firstIP)-1]++
	if err := s.pki.ensure(firstIP); err != nil {
		return fmt.Errorf("generating certificates: %w", err)
	}
	kcmKubeconfig := filepath.Join(dir, "controller-manager.kubeconfig")
	if err := s.writeKubeconfig(kcmKubeconfig, "system:kube-controller-manager", s.pki.kcmCert, s.pki.kcmKey); err != nil {
		return err
	}
	logf("certificates ready in %s (%v)", s.pki.dir, time.Since(start).Round(time.Millisecond))

	etcd, err := s.startEtcd()
	if err != nil {
		return fmt.Errorf("starting etcd: %w", err)
	}
	defer func() {
		logf("stopping etcd")
		etcd.Close()
		logf("stopped")
	}()
	logf("etcd ready on 127.0.0.1:%d (%v)", o.etcdPort, time.Since(start).Round(time.Millisecond))

	defer s.stopChildren()

	if err := s.startChild("kube-apiserver", "apiserver", s.apiserverArgs()); err != nil {
		return err
	}
	client, err := s.adminClient()
	if err != nil {
		return err
	}
	deadline := time.Now().Add(o.readyTimeout)
	if err := s.waitFor(ctx, client, deadline, "kube-apiserver /readyz", s.server+"/readyz", etcd); err != nil {
		return err
	}
	logf("kube-apiserver ready on %s (%v)", s.server, time.Since(start).Round(time.Millisecond))

	if err := s.startChild("kube-controller-manager", "controller-manager", s.kcmArgs(kcmKubeconfig)); err != nil {
		return err
	}
	if o.kcmPort != 0 {
		if err := s.waitFor(ctx, client, deadline, "kube-controller-manager /healthz", fmt.Sprintf("https://127.0.0.1:%d/healthz", o.kcmPort), etcd); err != nil {
			return err
		}
		logf("kube-controller-manager healthy (%v)", time.Since(start).Round(time.Millisecond))
	}
	if o.waitDefaultSA {
		if err := s.waitFor(ctx, client, deadline, "ServiceAccount default/default", s.server+"/api/v1/namespaces/default/serviceaccounts/default", etcd); err != nil {
			return err
		}
	}

	if err := s.writeKubeconfig(s.kubecfg, o.name, s.pki.adminCert, s.pki.adminKey); err != nil {
		return err
	}
	if err := writeFileAtomic(s.ready, []byte(s.server+"\n"), 0o644); err != nil {
		return err
	}
	logf("READY in %v: server=%s kubeconfig=%s", time.Since(start).Round(time.Millisecond), s.server, s.kubecfg)

	select {
	case <-ctx.Done():
		return nil
	case c := <-s.exited:
		return fmt.Errorf("%s exited unexpectedly: %v", c.name, c.err)
	case err := <-etcd.Err():
		return fmt.Errorf("etcd failed: %v", err)
	}
}

func checkPortFree(port int) error {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return err
	}
	return l.Close()
}

func (s *supervisor) startEtcd() (*embed.Etcd, error) {
	cfg := embed.NewConfig()
	cfg.Name = "llmfleet"
	cfg.Dir = filepath.Join(s.dir, "etcd")
	cfg.Logger = "zap"
	cfg.LogLevel = "warn"
	cfg.LogOutputs = []string{"stderr"}
	cfg.UnsafeNoFsync = !s.o.etcdFsync
	// Only set by etcd's own flag parsing; zero would log every request.
	cfg.WarningUnaryRequestDuration = embed.DefaultWarningUnaryRequestDuration
	// Single member, loopback only: a short election timeout makes a fresh
	// cluster elect itself leader in ~100ms instead of ~1s.
	cfg.TickMs = 10
	cfg.ElectionMs = 100
	clientURL := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", s.o.etcdPort)}
	peerURL := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", s.o.etcdPeerPort)}
	cfg.ListenClientUrls = []url.URL{clientURL}
	cfg.AdvertiseClientUrls = []url.URL{clientURL}
	cfg.ListenPeerUrls = []url.URL{peerURL}
	cfg.AdvertisePeerUrls = []url.URL{peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, err
	}
	select {
	case <-e.Server.ReadyNotify():
		return e, nil
	case err := <-e.Err():
		e.Close()
		return nil, err
	case <-time.After(60 * time.Second):
		e.Server.Stop()
		e.Close()
		return nil, errors.New("etcd did not become ready within 60s")
	}
}

func (s *supervisor) apiserverArgs() []string {
	p := s.pki
	args := []string{
		"--etcd-servers=" + fmt.Sprintf("http://127.0.0.1:%d", s.o.etcdPort),
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(s.o.port),
		"--cert-dir=" + filepath.Join(s.dir, "apiserver"),
		"--tls-cert-file=" + p.servingCert,
		"--tls-private-key-file=" + p.servingKey,
		"--client-ca-file=" + p.caCert,
		"--authorization-mode=Node,RBAC",
		"--service-cluster-ip-range=" + s.o.serviceCIDR,
		"--service-account-issuer=" + s.server,
		"--service-account-key-file=" + p.saPub,
		"--service-account-signing-key-file=" + p.saKey,
		"--allow-privileged=true",
		"--requestheader-client-ca-file=" + p.caCert,
		"--requestheader-allowed-names=front-proxy-client",
		"--requestheader-username-headers=X-Remote-User",
		"--requestheader-group-headers=X-Remote-Group",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--proxy-client-cert-file=" + p.proxyCert,
		"--proxy-client-key-file=" + p.proxyKey,
		"--profiling=false",
		"--v=" + strconv.Itoa(s.o.verbosity),
	}
	return append(args, s.o.apiserverArgs...)
}

func (s *supervisor) kcmArgs(kubeconfig string) []string {
	p := s.pki
	args := []string{
		"--kubeconfig=" + kubeconfig,
		"--authentication-kubeconfig=" + kubeconfig,
		"--authorization-kubeconfig=" + kubeconfig,
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(s.o.kcmPort),
		"--cert-dir=" + filepath.Join(s.dir, "controller-manager"),
		"--tls-cert-file=" + p.servingCert,
		"--tls-private-key-file=" + p.servingKey,
		"--client-ca-file=" + p.caCert,
		"--root-ca-file=" + p.caCert,
		"--service-account-private-key-file=" + p.saKey,
		"--use-service-account-credentials=true",
		"--cluster-signing-cert-file=" + p.caCert,
		"--cluster-signing-key-file=" + p.caKey,
		"--service-cluster-ip-range=" + s.o.serviceCIDR,
		"--leader-elect=false",
		// The default client rate limit (20 qps) staggers controller start-up
		// by ~150ms each (they fetch service account tokens); a test cluster
		// wants them all running at once and reconciling without throttling.
		"--kube-api-qps=1000",
		"--kube-api-burst=2000",
		"--controllers=" + s.o.controllers,
		"--profiling=false",
		"--v=" + strconv.Itoa(s.o.verbosity),
	}
	return append(args, s.o.kcmArgs...)
}

func (s *supervisor) startChild(name, sub string, args []string) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(exe, append([]string{sub}, args...)...)
	cmd.Dir = s.dir
	cmd.SysProcAttr = childSysProcAttr()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, done: make(chan struct{})}
	s.mu.Lock()
	s.children = append(s.children, c)
	s.mu.Unlock()
	logf("started %s (pid %d)", name, cmd.Process.Pid)
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		prefixLines(stdout, "["+name+"] ")
	}()
	go func() {
		<-copied
		c.err = cmd.Wait()
		close(c.done)
		s.exited <- c
	}()
	return nil
}

func prefixLines(r io.Reader, prefix string) {
	br := bufio.NewReaderSize(r, 64*1024)
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			logMu.Lock()
			io.WriteString(out, prefix)
			out.Write(line)
			if line[len(line)-1] != '\n' {
				io.WriteString(out, "\n")
			}
			logMu.Unlock()
		}
		if err != nil {
			return
		}
	}
}

// stopChildren stops components in reverse start order: SIGTERM, then SIGKILL
// after --stop-timeout.
func (s *supervisor) stopChildren() {
	s.mu.Lock()
	children := append([]*child(nil), s.children...)
	s.mu.Unlock()
	for i := len(children) - 1; i >= 0; i-- {
		c := children[i]
		select {
		case <-c.done:
			continue
		default:
		}
		logf("stopping %s (pid %d)", c.name, c.cmd.Process.Pid)
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.done:
		case <-time.After(s.o.stopTimeout):
			logf("%s did not exit within %v, killing", c.name, s.o.stopTimeout)
			_ = c.cmd.Process.Kill()
			<-c.done
		}
	}
}

func (s *supervisor) adminClient() (*http.Client, error) {
	caPEM, err := os.ReadFile(s.pki.caCert)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	pair, err := tls.LoadX509KeyPair(s.pki.adminCert, s.pki.adminKey)
	if err != nil {
		return nil, err
	}
	return &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}},
			DisableKeepAlives: true,
		},
	}, nil
}

// waitFor polls url until it answers 200, failing early if a component dies,
// the deadline passes or we are asked to stop.
func (s *supervisor) waitFor(ctx context.Context, client *http.Client, deadline time.Time, what, u string, etcd *embed.Etcd) error {
	var last string
	for {
		resp, err := client.Get(u)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out waiting for %s (last: %s)", what, last)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("interrupted while waiting for %s", what)
		case c := <-s.exited:
			return fmt.Errorf("%s exited while waiting for %s: %v", c.name, what, c.err)
		case err := <-etcd.Err():
			return fmt.Errorf("etcd failed while waiting for %s: %v", what, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (s *supervisor) writeKubeconfig(path, user, certFile, keyFile string) error {
	read := func(p string) (string, error) {
		b, err := os.ReadFile(p)
		return base64.StdEncoding.EncodeToString(b), err
	}
	ca, err := read(s.pki.caCert)
	if err != nil {
		return err
	}
	cert, err := read(certFile)
	if err != nil {
		return err
	}
	key, err := read(keyFile)
	if err != nil {
		return err
	}
	name := s.o.name
	content := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: %[1]s
  cluster:
    server: %[2]s
    certificate-authority-data: %[3]s
users:
- name: %[4]s
  user:
    client-certificate-data: %[5]s
    client-key-data: %[6]s
contexts:
- name: %[1]s
  context:
    cluster: %[1]s
    user: %[4]s
current-context: %[1]s
preferences: {}
`, name, s.server, ca, user, cert, key)
	return writeFileAtomic(path, []byte(content), 0o600)
}
