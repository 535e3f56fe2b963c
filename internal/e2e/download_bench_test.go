// SPDX-License-Identifier: MIT

package e2e

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/offload-nix/offload/pkg/serve"
	"github.com/offload-nix/offload/pkg/spec"
	"github.com/offload-nix/offload/pkg/ssh"
)

// BenchmarkNARDownload copies a 200 MiB store path from a real sshd builder:
// offload's SSH and serve client (DumpStorePath) against OpenSSH running
// `nix-store --dump` on the builder, in the same run. Each op is one whole
// copy, connection set-up included; MB/s is the figure to compare.
//
//	go test ./internal/e2e -run '^$' -bench NARDownload -benchtime 5x
func BenchmarkNARDownload(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	if _, err := exec.LookPath("ssh"); err != nil {
		b.Skip("needs the OpenSSH client for the comparison")
	}
	dir := b.TempDir()
	cmd := exec.Command(filepath.Join(repoRoot, "scripts/test-builder.sh"), "start", filepath.Join(dir, "b"), "bench1")
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("starting the builder: %v", err)
	}
	defer exec.Command(filepath.Join(repoRoot, "scripts/test-builder.sh"), "stop", filepath.Join(dir, "b")).Run()
	env := parseEnv(string(out))
	bexec := func(args ...string) string {
		out, err := exec.Command(filepath.Join(repoRoot, "scripts/test-builder.sh"), append([]string{"exec", filepath.Join(dir, "b")}, args...)...).Output()
		if err != nil {
			b.Fatalf("%v: %v", args, err)
		}
		return strings.TrimSpace(string(out))
	}
	blob := filepath.Join(dir, "blob")
	if err := exec.Command("sh", "-c", "head -c 209715200 /dev/urandom > "+blob).Run(); err != nil {
		b.Fatal(err)
	}
	path := bexec("nix-store", "--add", blob)
	size := int64(0)
	n := bexec("sh", "-c", "nix-store --dump "+path+" | wc -c")
	for _, c := range n {
		size = size*10 + int64(c-'0')
	}
	getenv := func(k string) string {
		if k == "NIX_SSHOPTS" {
			return "-F " + env["BUILDER_SSH_CONFIG"]
		}
		return os.Getenv(k)
	}
	ms, _, err := spec.ParseBuilders("ssh://bench1 x86_64-linux", spec.Options{})
	if err != nil {
		b.Fatal(err)
	}

	b.Run("offload", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			c, err := ssh.Dial(context.Background(), ms[0], ssh.Options{Env: getenv})
			if err != nil {
				b.Fatal(err)
			}
			s, err := c.Start(context.Background(), ssh.RemoteCommand(ms[0], false))
			if err != nil {
				b.Fatal(err)
			}
			go io.Copy(io.Discard, s.Stderr)
			sc, err := serve.New(s.Stdout, s.Stdin, serve.Options{})
			if err != nil {
				b.Fatal(err)
			}
			if err := sc.DumpStorePath(path, io.Discard, uint64(size)); err != nil {
				b.Fatal(err)
			}
			s.Close()
			s.Wait()
			c.Close()
		}
	})
	b.Run("openssh", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			cmd := exec.Command("ssh", "-F", env["BUILDER_SSH_CONFIG"], "bench1", "nix-store", "--dump", path)
			cmd.Stdout = io.Discard
			if err := cmd.Run(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
