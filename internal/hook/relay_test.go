// SPDX-License-Identifier: MIT

package hook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/offload-nix/offload/internal/builder"
	"github.com/offload-nix/offload/internal/testenv"
	"github.com/offload-nix/offload/pkg/hookproto"
	"github.com/offload-nix/offload/pkg/mux"
	"github.com/offload-nix/offload/pkg/spec"
	"github.com/offload-nix/offload/pkg/ssh"
)

const envOtherRelay = "OFFLOAD_TEST_OTHER_RELAY"

// TestRelayOfAnotherUser: root running Nix with another user's
// XDG_RUNTIME_DIR (plain su keeps it) finds that user's relay socket
// where its own would be. Its hook must not send the builder session
// there (the user would play the builder and learn the key path, HOME
// and SSH_AUTH_SOCK) and must connect directly instead.
func TestRelayOfAnotherUser(t *testing.T) {
	if dir := os.Getenv(envOtherRelay); dir != "" {
		ln, lock, err := mux.Listen(dir)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
		defer lock.Close()
		s := &mux.Server{UID: 0, Idle: time.Minute, Dial: func(ctx context.Context, target string) (mux.Remote, error) {
			os.WriteFile(filepath.Join(dir, "got"), []byte(target), 0o644)
			return nil, errors.New("played the builder")
		}}
		s.Serve(context.Background(), ln)
		os.Exit(0)
	}
	as := testenv.Nobody(t)

	// nobody's runtime directory, with its relay listening.
	bin, base := testenv.NobodyCopy(t)
	xdg := filepath.Join(base, "run-user-nobody")
	if err := os.Mkdir(xdg, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(xdg, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	// Where a hook that trusted XDG_RUNTIME_DIR would look: this binary's
	// directory below it.
	key := filepath.Base(builder.RelayDir(func(string) string { return "" }, ""))
	dir := filepath.Join(xdg, "offload-relay", key)
	cmd := exec.Command(as[0], append(as[1:], bin, "-test.run=^TestRelayOfAnotherUser$")...)
	cmd.Env = append(os.Environ(), envOtherRelay+"="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	for i := 0; ; i++ {
		if _, err := os.Stat(mux.SocketPath(dir)); err == nil {
			break
		}
		if i == 500 {
			t.Fatalf("nobody's relay did not listen: %s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	env := map[string]string{"XDG_RUNTIME_DIR": xdg, "HOME": "/root", "SSH_AUTH_SOCK": "/root/agent.sock"}
	h := &hook{
		env: Env{Getenv: func(k string) string { return env[k] }},
		cfg: testConfig(t, "connect-persist", "1m", "connect-timeout", "3s"),
		log: hookproto.NewLogger(io.Discard, 0),
	}
	m := &spec.Machine{Scheme: "ssh", URI: fmt.Sprintf("ssh://root@127.0.0.1:%d", port), Host: "127.0.0.1", Port: port, User: "root",
		SSHKey: filepath.Join(t.TempDir(), "id_builder")}
	c, err := h.connect(context.Background(), m)
	if err == nil {
		c.Close()
		t.Fatal("connected to a closed port")
	}
	if b, rerr := os.ReadFile(filepath.Join(dir, "got")); rerr == nil {
		t.Fatalf("nobody's relay got root's session: %s", b)
	}
	var se *ssh.Error
	if !errors.As(err, &se) {
		t.Errorf("connect = %v (%T), want the error of a direct connection", err, err)
	}
}
