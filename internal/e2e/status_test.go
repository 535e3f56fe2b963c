// SPDX-License-Identifier: MIT

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"
)

// statusJSON is what `offload status --json` prints (docs/status.md).
type statusJSON struct {
	Builders []struct {
		URI                 string `json:"uri"`
		Name                string `json:"name"`
		MaxJobs             int    `json:"maxJobs"`
		Busy                int    `json:"busy"`
		Healthy             bool   `json:"healthy"`
		UnhealthyForSeconds int64  `json:"unhealthyForSeconds"`
		LastError           string `json:"lastError"`
		Builds              uint64 `json:"builds"`
		Failures            uint64 `json:"failures"`
		BytesSent           uint64 `json:"bytesSent"`
		BytesReceived       uint64 `json:"bytesReceived"`
		LastConnectMs       int64  `json:"lastConnectMs"`
		Drained             bool   `json:"drained"`
		InConfig            bool   `json:"inConfig"`
		FetchPausedFor      int    `json:"fetchPausedFor"`
		Running             []struct {
			Drv       string `json:"drv"`
			Phase     string `json:"phase"`
			SinceUnix int64  `json:"sinceUnix"`
			Bytes     int64  `json:"bytes"`
		} `json:"running"`
	} `json:"builders"`
	Totals struct {
		Busy     int    `json:"busy"`
		MaxJobs  int    `json:"maxJobs"`
		Builds   uint64 `json:"builds"`
		Failures uint64 `json:"failures"`
	} `json:"totals"`
}

// statusOf runs `offload status args…` as the client sees it: in its
// namespace, so it reads the slot file the client's hooks write under its
// /nix, with --builders builders unless that is "" (then the client's
// configuration). It returns stdout and the exit code.
func statusOf(t *testing.T, c *client, builders string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	argv := []string{c.Dir, offloadBin, "status"}
	if builders != "" {
		argv = append(argv, "--builders", builders)
	}
	argv = append(argv, args...)
	cmd := exec.CommandContext(ctx, filepath.Join(repoRoot, "scripts/test-client.sh"), argv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("offload status %v: %v", args, err)
	}
	if stderr.Len() > 0 {
		t.Errorf("offload status %v wrote to stderr:\n%s", args, stderr.String())
	}
	return stdout.String(), code
}

// While a real build runs on a builder, `offload status --json` shows it
// there with its derivation name and phase; afterwards the counters show
// the finished build and the bytes it moved (docs/status.md).
func TestStatusDuringBuild(t *testing.T) {
	requireEnv(t)
	b1 := startBuilder(t, "b1", builderOpts{})
	c := newClient(t, b1)
	const builders = "ssh://b1 x86_64-linux - 2"

	out, code := statusOf(t, c, builders)
	if code != 0 || out != "offload 0/2 busy · no builds offloaded yet on this machine\n" {
		t.Errorf("status before any build: exit %d, %q", code, out)
	}

	const name = "status-sleeper"
	expr := c.file("status.nix", drv(name, "x86_64-linux", `/bin/sleep 4; echo slept > $out`, `u = "`+unique()+`";`))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, filepath.Join(repoRoot, "scripts/test-client.sh"), c.Dir,
		"nix-build", "--no-out-link", expr, "--max-jobs", "0", "--option", "build-hook", offloadBin, "--builders", builders)
	build.Env = append(os.Environ(), "NIX_SSHOPTS=-F "+filepath.Join(c.Dir, "ssh_config"))

	// Poll while it runs: the phases seen must include building, on b1,
	// under the derivation's name.
	var phases []string
	var sawBuilding bool
	duringBuild(t, build, func() {
		out, code := statusOf(t, c, builders, "--json")
		var st statusJSON
		if err := json.Unmarshal([]byte(out), &st); err != nil || len(st.Builders) != 1 {
			t.Fatalf("status --json: %v (exit %d):\n%s", err, code, out)
		}
		b := st.Builders[0]
		if code != 0 || !b.Healthy || b.URI != "ssh://b1" || b.Name != "b1" || b.MaxJobs != 2 {
			t.Errorf("status --json during the build: exit %d, %+v", code, b)
		}
		if b.Busy != len(b.Running) || st.Totals.Busy != b.Busy {
			t.Errorf("busy %d (total %d) but %d running", b.Busy, st.Totals.Busy, len(b.Running))
		}
		for _, r := range b.Running {
			if r.Drv != name {
				t.Errorf("running derivation %q, want %q", r.Drv, name)
			}
			if since := time.Since(time.Unix(r.SinceUnix, 0)); since < -time.Second || since > time.Minute {
				t.Errorf("running since %v ago", since)
			}
			if len(phases) == 0 || phases[len(phases)-1] != r.Phase {
				phases = append(phases, r.Phase)
			}
			if r.Phase == "building" && !sawBuilding {
				sawBuilding = true
				line, _ := statusOf(t, c, builders)
				if want := "offload 1/2 busy · b1 1/2 · 0 built 0 failed\n"; line != want {
					t.Errorf("status while building = %q, want %q", line, want)
				}
			}
		}
	})
	if !sawBuilding {
		t.Errorf("status never showed %s building on b1; phases seen: %v", name, phases)
	}
	t.Logf("phases seen: %v", phases)

	out, code = statusOf(t, c, builders, "--json")
	var st statusJSON
	if err := json.Unmarshal([]byte(out), &st); err != nil || len(st.Builders) != 1 {
		t.Fatalf("status --json after the build: %v:\n%s", err, out)
	}
	b := st.Builders[0]
	if code != 0 || b.Busy != 0 || len(b.Running) != 0 || b.Builds != 1 || b.Failures != 0 ||
		b.BytesReceived == 0 || !b.Healthy || b.LastError != "" {
		t.Errorf("status --json after the build: exit %d, %+v", code, b)
	}
	if st.Totals.Builds != 1 || st.Totals.Failures != 0 || st.Totals.MaxJobs != 2 {
		t.Errorf("totals after the build: %+v", st.Totals)
	}
	if line, _ := statusOf(t, c, builders); line != "offload 0/2 busy · b1 0/2 · 1 built 0 failed\n" {
		t.Errorf("status after the build = %q", line)
	}
	log, _ := statusOf(t, c, builders, "--log")
	if !regexp.MustCompile(`(?m)^\S+ \S+ +accept +` + name + ` +ssh://b1 `).MatchString(log) {
		t.Errorf("status --log does not show the accepted build:\n%s", log)
	}
}

// Trying a builder out with `nix-build --builders @FILE` leaves Nix's
// configuration without builders, so status has none of its own; it
// still shows the builder the hooks used, busy with the build, and marks
// it as not in the configuration.
func TestStatusBuildersFromCommandLine(t *testing.T) {
	requireEnv(t)
	b1 := startBuilder(t, "b1", builderOpts{})
	c := newClient(t, b1)
	file := c.file("try-builders", "ssh://b1 x86_64-linux - 2\n")

	const name = "status-cli-sleeper"
	expr := c.file("status-cli.nix", drv(name, "x86_64-linux", `/bin/sleep 4; echo slept > $out`, `u = "`+unique()+`";`))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	build := c.command(ctx, "nix-build", "--no-out-link", expr, "--max-jobs", "0",
		"--option", "build-hook", offloadBin, "--builders", "@"+file)
	var sawBusy bool
	var last string
	duringBuild(t, build, func() {
		out, code := statusOf(t, c, "", "--json")
		last = out
		var st statusJSON
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("status --json: %v (exit %d):\n%s", err, code, out)
		}
		for _, b := range st.Builders {
			if b.URI != "ssh://b1" || b.Busy == 0 {
				continue
			}
			if b.InConfig || b.Name != "b1" || b.MaxJobs != 2 || len(b.Running) != 1 || b.Running[0].Drv != name || st.Totals.Busy != 1 {
				t.Errorf("status --json during the build: %+v, totals %+v", b, st.Totals)
			}
			if !sawBusy {
				sawBusy = true
				line, _ := statusOf(t, c, "")
				if want := "offload 1/2 busy · b1 1/2 not in config · 0 built 0 failed\n"; line != want {
					t.Errorf("status while building = %q, want %q", line, want)
				}
			}
		}
	})
	if !sawBusy {
		t.Errorf("status --json never showed ssh://b1 busy with %s; last printed:\n%s", name, last)
	}
	out, _ := statusOf(t, c, "", "--json")
	var st statusJSON
	if err := json.Unmarshal([]byte(out), &st); err != nil || len(st.Builders) != 1 || st.Builders[0].Builds != 1 || st.Builders[0].InConfig {
		t.Errorf("status --json after the build: %v\n%s", err, out)
	}
}

// duringBuild starts build, a nix-build, and calls poll every 100 ms
// while it runs. It fails t if the build fails.
func duringBuild(t *testing.T, build *exec.Cmd, poll func()) {
	t.Helper()
	var stderr bytes.Buffer
	build.Stderr = &stderr
	if err := build.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- build.Wait() }()
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("nix-build: %v\n%s", err, stderr.String())
			}
			return
		case <-time.After(100 * time.Millisecond):
		}
		poll()
	}
}
