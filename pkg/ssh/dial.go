// SPDX-License-Identifier: MIT

package ssh

// Rules for this file: the whole connection set-up (TCP or proxy, SSH
// handshake, authentication) is bounded by ConnectTimeout, enforced by
// closing the transport, which works for every kind of transport
// (proxy channels have no deadlines). Nix has no such bound
// (src/libstore/ssh.cc passes no ConnectTimeout): a black-holed builder
// would hang the build.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/sys/cpu"

	"github.com/offload-nix/offload/pkg/spec"
)

// Kind classifies a connection failure.
type Kind int

// Kinds of connection failures.
const (
	Other    Kind = iota
	Refused       // nothing listens on the port
	Timeout       // no answer within ConnectTimeout, or keepalives unanswered
	DNS           // the host name does not resolve
	Auth          // no key was accepted
	HostKey       // the host key was refused (see HostKeyError)
	Protocol      // the peer is not an SSH server, or the handshake failed
)

func (k Kind) String() string {
	switch k {
	case Refused:
		return "connection refused"
	case Timeout:
		return "timeout"
	case DNS:
		return "host name lookup failed"
	case Auth:
		return "authentication failed"
	case HostKey:
		return "host key refused"
	case Protocol:
		return "ssh protocol error"
	}
	return "error"
}

// Error is a failure to connect to Host.
type Error struct {
	Kind Kind
	Host string // the machine's host, as in its URI
	Err  error
}

func (e *Error) Error() string {
	return "ssh: " + e.Host + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// Client is a connection to a builder, or, for a machine named
// localhost, a way to start local processes.
type Client struct {
	settings *Settings
	conn     *gossh.Client // nil when local
	jump     *Client
	closers  []io.Closer

	done      chan struct{}
	gone      chan struct{} // closed when the connection has ended
	closeOnce sync.Once
	mu        sync.Mutex
	deadErr   error // why keepalive closed the connection

	hostKey gossh.PublicKey // the key the server proved it holds
}

// HostKey returns the host key the server proved it holds and that was
// verified, against the machines file's pinned key or known_hosts; nil for
// a local client.
func (c *Client) HostKey() gossh.PublicKey { return c.hostKey }

// Settings returns the settings the client was dialled with.
func (c *Client) Settings() *Settings { return c.settings }

// Close closes the connection and any jump host connection or proxy
// command under it. It is safe to call more than once.
func (c *Client) Close() error {
	var err error
	c.closeOnce.Do(func() {
		if c.done != nil {
			close(c.done)
		}
		if c.conn != nil {
			err = c.conn.Close()
		}
		for _, cl := range c.closers {
			cl.Close()
		}
		if c.jump != nil {
			c.jump.Close()
		}
	})
	return err
}

// Dial resolves m's settings and connects.
func Dial(ctx context.Context, m spec.Machine, o Options) (*Client, error) {
	s, err := Resolve(m, o)
	if err != nil {
		return nil, err
	}
	return DialSettings(ctx, s, o)
}

// DialSettings connects with settings from Resolve.
func DialSettings(ctx context.Context, s *Settings, o Options) (*Client, error) {
	if s.Local {
		return &Client{settings: s}, nil
	}
	for _, n := range s.Notes {
		o.logf("ssh: %s: %s", s.Host, n)
	}
	ctx, cancel := context.WithTimeout(ctx, s.ConnectTimeout)
	defer cancel()
	c, err := dial(ctx, s, &o)
	if err != nil {
		return nil, classify(ctx, s, err)
	}
	return c, nil
}

func dial(ctx context.Context, s *Settings, o *Options) (*Client, error) {
	hkcb, algos, err := s.hostKeyCheck(o)
	if err != nil {
		return nil, err
	}
	a := s.loadAuth(o)
	defer a.close()
	if len(a.signers) == 0 {
		return nil, &Error{Kind: Auth, Host: s.Host, Err: fmt.Errorf("no usable key for %s: %s", s.User, noteList(a.notes, "no identity file found and no ssh-agent key"))}
	}

	c := &Client{settings: s}
	conn, err := c.transport(ctx, s, o)
	if err != nil {
		c.Close()
		return nil, err
	}
	c.closers = append(c.closers, conn)

	verify := func(host string, remote net.Addr, key gossh.PublicKey) error {
		err := hkcb(host, remote, key)
		if err == nil {
			c.hostKey = key
		}
		return err
	}
	cfg := &gossh.ClientConfig{
		Config:            algorithmConfig(),
		User:              s.User,
		Auth:              []gossh.AuthMethod{gossh.PublicKeys(a.signers...)},
		HostKeyCallback:   verify,
		HostKeyAlgorithms: algos,
		ClientVersion:     "SSH-2.0-offload",
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	addr := net.JoinHostPort(s.HostName, strconv.Itoa(s.Port))
	sc, chans, reqs, err := gossh.NewClientConn(conn, addr, cfg)
	if !stop() {
		if sc != nil {
			sc.Close()
		}
		c.Close()
		return nil, ctx.Err()
	}
	if err != nil {
		c.Close()
		if strings.Contains(err.Error(), "unable to authenticate") {
			return nil, &Error{Kind: Auth, Host: s.Host, Err: fmt.Errorf("no key accepted for user %s on %s (offered: %s)%s: add the public key to the builder's ~%s/.ssh/authorized_keys or set the machine's ssh key",
				s.User, addr, a.describe(), noteSuffix(a.notes), s.User)}
		}
		return nil, err
	}
	c.conn = gossh.NewClient(sc, chans, reqs)
	c.gone = make(chan struct{})
	go func() {
		c.conn.Wait()
		close(c.gone)
	}()
	if s.ServerAliveInterval > 0 {
		c.done = make(chan struct{})
		go c.keepalive(s.ServerAliveInterval, s.ServerAliveCountMax)
	}
	return c, nil
}

func noteList(notes []string, def string) string {
	if len(notes) == 0 {
		return def
	}
	return strings.Join(notes, "; ")
}

func noteSuffix(notes []string) string {
	if len(notes) == 0 {
		return ""
	}
	return "; " + strings.Join(notes, "; ")
}

// transport opens the byte stream to the SSH server: TCP, a
// direct-tcpip channel through a jump host, or a proxy command.
func (c *Client) transport(ctx context.Context, s *Settings, o *Options) (net.Conn, error) {
	addr := net.JoinHostPort(s.HostName, strconv.Itoa(s.Port))
	switch {
	case s.ProxyJump != "":
		if o.jumpDepth >= 8 {
			return nil, fmt.Errorf("ProxyJump %s: more than 8 hops, is there a loop?", s.ProxyJump)
		}
		hops := strings.Split(s.ProxyJump, ",")
		last, rest := hops[len(hops)-1], strings.Join(hops[:len(hops)-1], ",")
		m, err := parseJump(last)
		if err != nil {
			return nil, fmt.Errorf("ProxyJump %s: %w", s.ProxyJump, err)
		}
		jo := *o
		jo.jumpDepth++
		env := o.getenv
		// ssh -J runs "ssh -W host:port jump" without the other
		// command-line options, so NIX_SSHOPTS does not apply to
		// the jump host (its -F does).
		jo.Env = func(k string) string {
			if k == "NIX_SSHOPTS" {
				return ""
			}
			return env(k)
		}
		js, err := Resolve(m, jo)
		if err != nil {
			return nil, fmt.Errorf("ProxyJump %s: %w", last, err)
		}
		if rest != "" {
			js.ProxyJump, js.ProxyCommand = rest, ""
			js.Sources["proxyjump"] = "ProxyJump of " + s.Host
		}
		jc, err := dial(ctx, js, &jo)
		if err != nil {
			return nil, fmt.Errorf("ProxyJump %s: %w", last, err)
		}
		c.jump = jc
		conn, err := jc.conn.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("ProxyJump %s: forwarding to %s: %w", last, addr, err)
		}
		return conn, nil
	case s.ProxyCommand != "":
		return startProxy(s)
	}
	d := net.Dialer{KeepAlive: 15 * time.Second}
	return d.DialContext(ctx, "tcp", addr)
}

// parseJump parses one ProxyJump hop: [ssh://][user@]host[:port].
func parseJump(h string) (spec.Machine, error) {
	h = strings.TrimPrefix(strings.TrimSpace(h), "ssh://")
	var m spec.Machine
	if i := strings.LastIndexByte(h, '@'); i >= 0 {
		m.User, h = h[:i], h[i+1:]
	}
	if host, port, err := net.SplitHostPort(h); err == nil {
		p, err := strconv.Atoi(port)
		if err != nil || p <= 0 || p > 65535 {
			return m, fmt.Errorf("port %q: not a port number", port)
		}
		m.Host, m.Port = host, p
	} else {
		m.Host = strings.Trim(h, "[]")
	}
	if m.Host == "" {
		return m, errors.New("no host")
	}
	m.Name = m.Host
	return m, nil
}

// algorithmConfig prefers curve25519 key exchange and AES-GCM where
// the CPU has AES instructions, ChaCha20-Poly1305 elsewhere (e.g. most
// riscv64 and older arm boards).
func algorithmConfig() gossh.Config {
	kex := []string{gossh.KeyExchangeCurve25519, gossh.KeyExchangeMLKEM768X25519,
		gossh.KeyExchangeECDHP256, gossh.KeyExchangeECDHP384, gossh.KeyExchangeECDHP521,
		gossh.KeyExchangeDH14SHA256, gossh.KeyExchangeDH16SHA512, gossh.KeyExchangeDHGEXSHA256}
	gcm := []string{gossh.CipherAES128GCM, gossh.CipherAES256GCM}
	chacha := []string{gossh.CipherChaCha20Poly1305}
	var ciphers []string
	if hasAES() {
		ciphers = append(gcm, chacha...)
	} else {
		ciphers = append(chacha, gcm...)
	}
	ciphers = append(ciphers, gossh.CipherAES128CTR, gossh.CipherAES192CTR, gossh.CipherAES256CTR)
	return gossh.Config{KeyExchanges: kex, Ciphers: ciphers}
}

func hasAES() bool {
	return cpu.X86.HasAES && cpu.X86.HasPCLMULQDQ ||
		cpu.ARM64.HasAES && cpu.ARM64.HasPMULL ||
		cpu.S390X.HasAES && cpu.S390X.HasAESGCM
}

// keepalive sends keepalive@openssh.com requests and closes the
// connection when none is answered for interval×count, like OpenSSH's
// ServerAliveInterval and ServerAliveCountMax.
func (c *Client) keepalive(interval time.Duration, count int) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
		}
		reply := make(chan error, 1)
		go func() {
			_, _, err := c.conn.SendRequest("keepalive@openssh.com", true, nil)
			reply <- err
		}()
		timer := time.NewTimer(interval * time.Duration(count))
		select {
		case err := <-reply:
			timer.Stop()
			if err != nil {
				return // connection closed
			}
		case <-c.done:
			timer.Stop()
			return
		case <-timer.C:
			c.mu.Lock()
			c.deadErr = &Error{Kind: Timeout, Host: c.settings.Host, Err: fmt.Errorf("no answer to %d keepalives in %v (ServerAliveInterval %v, ServerAliveCountMax %d): connection closed", count, interval*time.Duration(count), interval, count)}
			c.mu.Unlock()
			c.Close()
			return
		}
	}
}

// Dead returns why keepalives closed the connection (an *Error of kind
// Timeout), or nil while they have not.
func (c *Client) Dead() error { return c.dead() }

// Err says why the connection can start no more sessions: what Dead
// says, or that it has closed (the server or the network ended it); nil
// while it is open. It asks nothing of the server, so a connection that
// died silently looks open until its keepalives say otherwise.
func (c *Client) Err() error {
	if d := c.dead(); d != nil {
		return d
	}
	if c.gone == nil {
		return nil
	}
	select {
	case <-c.gone:
		return &Error{Kind: Other, Host: c.settings.Host, Err: errors.New("connection closed")}
	default:
		return nil
	}
}

// Ping asks the server for an answer now (a keepalive@openssh.com
// request): a connection whose peer went away without a word (a builder
// powered off, a network cut) looks open to Err until its keepalives
// give up, and this finds out within ctx. Nil for a local client.
func (c *Client) Ping(ctx context.Context) error {
	if c.conn == nil {
		return nil
	}
	reply := make(chan error, 1)
	go func() {
		_, _, err := c.conn.SendRequest("keepalive@openssh.com", true, nil)
		reply <- err
	}()
	select {
	case err := <-reply:
		if err != nil {
			return c.connErr(err)
		}
		return nil
	case <-ctx.Done():
		return &Error{Kind: Timeout, Host: c.settings.Host, Err: fmt.Errorf("no answer to a keepalive: %w", ctx.Err())}
	}
}

// dead returns why keepalive closed the connection, or nil.
func (c *Client) dead() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.deadErr
}

// classify turns a dial error into an *Error.
func classify(ctx context.Context, s *Settings, err error) error {
	var e *Error
	if errors.As(err, &e) {
		if e.Host != s.Host {
			return &Error{Kind: e.Kind, Host: s.Host, Err: err}
		}
		return e
	}
	kind := Other
	var hk *HostKeyError
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &hk):
		kind = HostKey
	case errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded):
		kind = Timeout
		err = fmt.Errorf("no answer from %s:%d within %v (ConnectTimeout %s): is the builder up and reachable? (%w)", s.HostName, s.Port, s.ConnectTimeout, s.Sources["connecttimeout"], err)
	case errors.Is(err, context.Canceled):
		kind = Other
	case errors.As(err, &dnsErr):
		kind = DNS
		err = fmt.Errorf("cannot resolve host name %s: %w", s.HostName, err)
	case errors.Is(err, syscall.ECONNREFUSED):
		kind = Refused
		err = fmt.Errorf("%s:%d refused the connection: is sshd running and listening on port %d? (%w)", s.HostName, s.Port, s.Port, err)
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.ETIMEDOUT):
		kind = Timeout
	case strings.Contains(err.Error(), "no common algorithm for host key"):
		kind = HostKey
		if s.PinnedHostKey != nil {
			err = fmt.Errorf("the server has no %s host key, which the machines file pins (%s): fix the machine's host key field (%w)", s.PinnedHostKey.Type(), gossh.FingerprintSHA256(s.PinnedHostKey), err)
		}
	case strings.HasPrefix(err.Error(), "ssh: "):
		kind = Protocol
	}
	if kind == HostKey && hk != nil {
		err = hk
	}
	return &Error{Kind: kind, Host: s.Host, Err: err}
}

// proxyConn is a net.Conn over a proxy command's standard streams.
type proxyConn struct {
	cmd      *exec.Cmd
	r        io.ReadCloser
	w        io.WriteCloser
	stderr   *limitedBuffer
	once     sync.Once
	waitOnce sync.Once
}

func startProxy(s *Settings) (net.Conn, error) {
	line, err := s.expandProxy(s.ProxyCommand)
	if err != nil {
		return nil, err
	}
	// ssh(1) runs "exec <command>" with the user's shell.
	cmd := exec.Command("/bin/sh", "-c", "exec "+line)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	w, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	r, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	pc := &proxyConn{cmd: cmd, r: r, w: w, stderr: &limitedBuffer{max: 4096}}
	cmd.Stderr = pc.stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("ProxyCommand %s: %w", line, err)
	}
	return pc, nil
}

// expandProxy expands %h %p %r %n %% in a ProxyCommand. A host or user
// name with characters a shell would interpret is refused, as ssh(1)
// refuses it since OpenSSH 9.6 (CVE-2023-51385): the names come from
// the machines file and ssh_config, the command runs as the hook's user.
func (s *Settings) expandProxy(v string) (string, error) {
	return expandTokens(v, func(c byte) (string, bool, error) {
		var name string
		ok := true
		switch c {
		case 'h':
			name, ok = s.HostName, validHostname(s.HostName)
		case 'n':
			name, ok = s.Host, validHostname(s.Host)
		case 'r':
			name, ok = s.User, validRemoteUser(s.User)
		case 'p':
			name = strconv.Itoa(s.Port)
		default:
			return "", false, nil
		}
		if !ok {
			return "", true, fmt.Errorf("ProxyCommand not run: %%%c would put %q in a shell command, and it has characters a shell interprets; fix the name in the machines file or ssh_config", c, name)
		}
		return name, true, nil
	})
}

func (p *proxyConn) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if err == io.EOF {
		// Reap the command so its stderr is complete.
		p.wait()
		if p.stderr.Len() > 0 {
			err = fmt.Errorf("ProxyCommand ended: %s", strings.TrimSpace(p.stderr.String()))
		}
	}
	return n, err
}

func (p *proxyConn) wait() {
	p.waitOnce.Do(func() { p.cmd.Wait() })
}

func (p *proxyConn) Write(b []byte) (int, error) { return p.w.Write(b) }

func (p *proxyConn) Close() error {
	p.once.Do(func() {
		p.w.Close()
		if p.cmd.Process != nil {
			syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
		}
		p.wait()
	})
	return nil
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "proxy-command" }

func (p *proxyConn) LocalAddr() net.Addr                { return pipeAddr{} }
func (p *proxyConn) RemoteAddr() net.Addr               { return pipeAddr{} }
func (p *proxyConn) SetDeadline(t time.Time) error      { return nil }
func (p *proxyConn) SetReadDeadline(t time.Time) error  { return nil }
func (p *proxyConn) SetWriteDeadline(t time.Time) error { return nil }

// limitedBuffer keeps the first max bytes written to it.
type limitedBuffer struct {
	mu  sync.Mutex
	max int
	buf bytes.Buffer
}

func (l *limitedBuffer) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := l.max - l.buf.Len(); room > 0 {
		if len(b) > room {
			l.buf.Write(b[:room])
		} else {
			l.buf.Write(b)
		}
	}
	return len(b), nil
}

func (l *limitedBuffer) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Len()
}

func (l *limitedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// validHostname reports whether a host name can be put in a ProxyCommand
// without a shell seeing syntax in it (OpenSSH 9.6 ssh.c valid_hostname).
func validHostname(s string) bool {
	if strings.HasPrefix(s, "-") {
		return false
	}
	for _, c := range []byte(s) {
		if strings.IndexByte("'`\"$\\;&<>|(){}", c) >= 0 || isSpace(c) || c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}

// validRemoteUser is validHostname for user names (OpenSSH 9.6 ssh.c
// valid_ruser): spaces are allowed, but not before a '-', and a
// backslash not at the end.
func validRemoteUser(s string) bool {
	if strings.HasPrefix(s, "-") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if strings.IndexByte("'`\";&<>|(){}", c) >= 0 || c < 0x20 && !isSpace(c) || c == 0x7f {
			return false
		}
		if isSpace(c) && i+1 < len(s) && s[i+1] == '-' {
			return false
		}
		if c == '\\' && i+1 == len(s) {
			return false
		}
	}
	return true
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}
