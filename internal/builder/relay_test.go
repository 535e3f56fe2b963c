// SPDX-License-Identifier: MIT

package builder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/offload-nix/offload/pkg/mux"
	"github.com/offload-nix/offload/pkg/slots"
	"github.com/offload-nix/offload/pkg/spec"
	"github.com/offload-nix/offload/pkg/ssh"
)

// endedRemote starts every command and ends it at once, as a relay whose
// connection broke just after the session opened.
type endedRemote struct{}

func (endedRemote) Run(ctx context.Context, argv []string, stdin io.Reader, stdout, stderr io.Writer, started func()) (mux.Exit, error) {
	started()
	return mux.Exit{Code: -1, Signal: "HUP"}, nil
}
func (endedRemote) Err() error   { return nil }
func (endedRemote) Close() error { return nil }

// closedPort is a machine on a local port where nothing listens, with no
// key: a direct connection fails with an *ssh.Error, a relayed one with
// the relay's report.
func closedPort(t *testing.T) *spec.Machine {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	key := filepath.Join(t.TempDir(), "id_builder") // none: the error comes before a dial
	return &spec.Machine{Scheme: "ssh", URI: fmt.Sprintf("ssh://root@127.0.0.1:%d", port), Host: "127.0.0.1", Port: port, User: "root", SSHKey: key}
}

// serveRelay runs s as the relay in a new directory, which it returns.
func serveRelay(t *testing.T, s *mux.Server) string {
	dir := filepath.Join(t.TempDir(), "relay")
	ln, lock, err := mux.Listen(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		s.Serve(ctx, ln)
		lock.Close()
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return dir
}

// relayFaults are relays that a hook must go around: one that refuses
// (stale), one whose sessions end before the store protocol starts, and
// none, where the one started exits at once.
func relayFaults() []relayFault {
	return []relayFault{
		{"stale", func(t *testing.T) string {
			// A new relay is started for the hooks after this one.
			wantRelayStarted(t)
			return serveRelay(t, &mux.Server{UID: -1, Check: func(target string) error { return checkTarget(target, "another binary") },
				Dial: func(ctx context.Context, target string) (mux.Remote, error) { return endedRemote{}, nil }})
		}},
		{"session ended", func(t *testing.T) string {
			return serveRelay(t, &mux.Server{UID: -1, Dial: func(ctx context.Context, target string) (mux.Remote, error) { return endedRemote{}, nil }})
		}},
		{"none runs yet", func(t *testing.T) string {
			// A relay is started for the hooks after this one, and
			// this one does not wait for it (here it never listens).
			wantRelayStarted(t)
			return filepath.Join(t.TempDir(), "relay")
		}},
		{"cannot start", func(t *testing.T) string {
			// Another relay holds the directory's lock and does not
			// listen (it is stopping): a new one exits at once.
			dir := filepath.Join(t.TempDir(), "relay")
			ln, lock, err := mux.Listen(dir)
			if err != nil {
				t.Fatal(err)
			}
			ln.Close()
			t.Cleanup(func() { lock.Close() })
			testOnlyRelayExe = []string{"/bin/true"}
			t.Cleanup(func() { testOnlyRelayExe = nil })
			return dir
		}},
	}
}

// wantRelayStarted makes the relays started during t a stand-in that
// never listens, and fails t unless one was started by its end.
func wantRelayStarted(t *testing.T) {
	started := filepath.Join(t.TempDir(), "started")
	testOnlyRelayExe = []string{"/bin/sh", "-c", `: > "$0"; exec sleep 3`, started}
	t.Cleanup(func() {
		testOnlyRelayExe = nil
		for i := 0; ; i++ {
			_, err := os.Stat(started)
			if err == nil {
				break
			}
			if i == 200 {
				t.Errorf("no relay was started for later hooks: %v", err)
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

type relayFault struct {
	name string
	dir  func(t *testing.T) string
}

// TestRelayFallback: whatever goes wrong with the relay rather than the
// builder makes Dial connect by itself, and the builder's own answer (here
// a refused port) is what the caller sees, as without a relay. Before,
// a relay's own refusal or a relayed session that ended before the
// handshake counted against the builder, and a hook whose relay would
// not start waited half a second for it.
func TestRelayFallback(t *testing.T) {
	m := closedPort(t)
	tests := relayFaults()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var why []string
			o := Options{Relay: tt.dir(t), Persist: time.Minute, ConnectTimeout: 3 * time.Second,
				Getenv: func(k string) string { return "" },
				Debugf: func(format string, args ...any) { why = append(why, fmt.Sprintf(format, args...)) }}
			start := time.Now()
			c, err := Dial(context.Background(), m, o)
			if err == nil {
				c.Close()
				t.Fatal("connected to a closed port")
			}
			var se *ssh.Error
			if !errors.As(err, &se) {
				t.Errorf("Dial = %v (%T), want the direct connection's error", err, err)
			}
			if len(why) != 1 || !strings.Contains(why[0], "without the relay") {
				t.Errorf("Debugf got %q, want one line of why", why)
			}
			if el := time.Since(start); el > 300*time.Millisecond {
				t.Errorf("Dial took %v, want a fallback at once", el)
			}
		})
	}
}

// TestCloseOnExec: the relay must not inherit the hook's descriptors
// that lack close-on-exec (Nix's fds 4 and 5).
func TestCloseOnExec(t *testing.T) {
	var p [2]int
	if err := syscall.Pipe(p[:]); err != nil { // no O_CLOEXEC
		t.Fatal(err)
	}
	defer syscall.Close(p[0])
	defer syscall.Close(p[1])
	if err := closeOnExec(); err != nil {
		t.Fatal(err)
	}
	for _, fd := range p {
		flags, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_GETFD, 0)
		if errno != 0 || flags&syscall.FD_CLOEXEC == 0 {
			t.Errorf("fd %d: flags %#x, %v; want FD_CLOEXEC", fd, flags, errno)
		}
	}
}

// TestRelayTargetSSHSettings: hooks whose SSH settings differ, here an
// ssh_config edited between two hooks, get different connections from
// the relay; the same settings share one.
func TestRelayTargetSSHSettings(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "ssh_config")
	env := map[string]string{"NIX_SSHOPTS": "-F " + cfg}
	o := &Options{Getenv: func(k string) string { return env[k] }}
	m := &spec.Machine{Scheme: "ssh", URI: "ssh://b1", Host: "b1"}
	target := func(conf string) string {
		if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		return relayTargetOf(m, o)
	}
	a := target("Host b1\n\tHostName 127.0.0.1\n\tPort 2201\n")
	if b := target("Host b1\n\tHostName 127.0.0.1\n\tPort 2201\n"); b != a {
		t.Errorf("same settings, different targets:\n%s\n%s", a, b)
	}
	if b := target("Host b1\n\tHostName 127.0.0.1\n\tPort 2202\n"); b == a {
		t.Errorf("ssh_config's Port changed, target did not: %s", a)
	}
}

// TestRelayErrCode: the relay's report of a failed dial or a broken
// connection counts against the builder with its own kind, as a direct
// connection's would (a refused port, a keepalive timeout), not "other".
func TestRelayErrCode(t *testing.T) {
	m := &spec.Machine{Host: "b1"}
	for _, code := range []slots.ErrCode{slots.ErrConnect, slots.ErrTimeout, slots.ErrAuth} {
		err := relayErr(m, &mux.Error{Code: uint32(code), Msg: "ssh: b1: it failed"})
		if got := ErrCode(err); got != code {
			t.Errorf("ErrCode(relayed %v) = %v", code, got)
		}
	}
}
