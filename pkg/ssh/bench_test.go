// SPDX-License-Identifier: MIT

package ssh

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"testing"
)

// BenchmarkConnect measures connect + handshake + authentication + exec
// "true" against a local sshd, for offload and for OpenSSH's ssh doing
// the same work. Both include starting "sshd -i" on the server side.
func BenchmarkConnect(b *testing.B) {
	c := newClient(b)
	s := startSSHD(b, serverOpts{clientPubs: []string{c.pubLine}})
	m := s.machine(b, c, true)
	kh := c.write(b, "bench_known_hosts", fmt.Sprintf("[127.0.0.1]:%d %s\n", s.addr.Port, s.hostLine))

	b.Run("offload", func(b *testing.B) {
		ctx := context.Background()
		o := c.options()
		b.ReportAllocs()
		for b.Loop() {
			cl, err := Dial(ctx, m, o)
			if err != nil {
				b.Fatal(err)
			}
			sess, err := cl.Start(ctx, []string{"true"})
			if err != nil {
				b.Fatal(err)
			}
			sess.Stdin.Close()
			go io.Copy(io.Discard, sess.Stderr)
			io.Copy(io.Discard, sess.Stdout)
			if err := sess.Wait(); err != nil {
				b.Fatal(err)
			}
			cl.Close()
		}
	})
	// OpenSSH 9.x defaults to sntrup761x25519 key exchange; the second
	// run uses the curve25519 exchange offload prefers.
	for _, kex := range []string{"", "curve25519-sha256"} {
		name := "openssh"
		if kex != "" {
			name += "-" + kex
		}
		b.Run(name, func(b *testing.B) { benchOpenSSH(b, c, s.addr.Port, m.User, kh, kex) })
	}
}

func benchOpenSSH(b *testing.B, c *clientEnv, port int, user, kh, kex string) {
	ssh, err := exec.LookPath("ssh")
	if err != nil {
		b.Skipf("ssh not found: %v", err)
	}
	args := []string{"-F", "/dev/null", "-o", "BatchMode=yes", "-o", "UserKnownHostsFile=" + kh,
		"-o", "StrictHostKeyChecking=yes", "-o", "IdentitiesOnly=yes", "-i", c.key,
		"-p", strconv.Itoa(port), "-l", user}
	if kex != "" {
		args = append(args, "-o", "KexAlgorithms="+kex)
	}
	args = append(args, "127.0.0.1", "true")
	for b.Loop() {
		if out, err := exec.Command(ssh, args...).CombinedOutput(); err != nil {
			b.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
}
