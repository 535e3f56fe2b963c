// SPDX-License-Identifier: MIT

package hook

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"time"

	"github.com/offload-nix/offload/pkg/localstore"
	"github.com/offload-nix/offload/pkg/serve"
)

// localServe is a local `nix-store --serve` (read-only), the way to read
// the local store's paths and NARs without its database.
type localServe struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	serve *serve.Client
}

func (h *hook) startLocalServe(ctx context.Context, st *localstore.Store) (*localServe, error) {
	args := append([]string{"nix-store"}, st.NixStore[1:]...)
	args = append(args, "--serve")
	if st.URI != "" {
		args = append(args, "--store", st.URI)
	}
	cmd := &exec.Cmd{Path: st.NixStore[0], Args: args}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr strings.Builder
	cmd.Stderr = &limitedWriter{w: &stderr, n: 4096}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%v: %w", cmd.Args, err)
	}
	ls := &localServe{cmd: cmd, stdin: stdin}
	ls.serve, err = serve.New(stdout, stdin, serve.Options{Host: "local", Stderr: stderr.String})
	if err != nil {
		ls.Close()
		return nil, fmt.Errorf("%v: %w", cmd.Args, err)
	}
	return ls, nil
}

// Close ends the local nix-store: its input closes, and it is killed if it
// has not exited 5 s later.
func (ls *localServe) Close() {
	ls.stdin.Close()
	kill := time.AfterFunc(5*time.Second, func() { ls.cmd.Process.Kill() })
	ls.cmd.Wait()
	kill.Stop()
}

type limitedWriter struct {
	w io.Writer
	n int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if l.n > 0 {
		q := p
		if len(q) > l.n {
			q = q[:l.n]
		}
		l.w.Write(q)
		l.n -= len(q)
	}
	return len(p), nil
}
