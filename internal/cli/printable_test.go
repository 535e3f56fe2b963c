// SPDX-License-Identifier: MIT

package cli

import (
	"bytes"
	"strconv"
	"strings"
	"testing"

	"github.com/offload-nix/offload/pkg/hookproto"
	"github.com/offload-nix/offload/pkg/wire"
)

// hostile is a derivation system that, printed raw, clears the screen,
// sets the window title, recolours and forges a log line.
const hostile = "x\x1b[2J\x1b]0;pwned\a\u009b31m\u202e\n2026-01-01 00:00:00  accept  evil.drv  ssh://evil  chosen"

// unsafeOutput says what in out a terminal would act on, or "".
func unsafeOutput(out string) string {
	for _, r := range out {
		switch {
		case r == '\n':
		case r < 0x20 || (r >= 0x7f && r < 0xa0) || r == '\u202e':
			return strconv.Quote(out)
		}
	}
	if strings.Contains(out, "\n2026-01-01") {
		return "a forged log line"
	}
	return ""
}

// A derivation's system and features reach the decision log, which every
// user's status reads; no form of status, pick or machines prints them raw.
func TestHostileSystemPrintable(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{"OFFLOAD_STATE_DIR": dir, "OFFLOAD_CONF": "/dev/null"}
	builders := "ssh://b1 aarch64-linux - 2 1 kvm"
	in := settingsBlock(t, map[string]string{"builders": builders, "system": "x86_64-linux"})
	var b bytes.Buffer
	w := wire.NewWriter(&b)
	hookproto.WriteRequest(w, &hookproto.Request{System: hostile, Features: []string{"kvm\x1b]0;t\a"},
		DrvPath: "/nix/store/00000000000000000000000000000000-x\x1b[2J.drv"})
	w.Flush()
	_, stderr, code := run(t, append(in, b.Bytes()...), env, "3")
	t.Logf("hook: %q", stderr)
	if code != 0 || !strings.Contains(stderr, "# decline") {
		t.Fatalf("hook: exit %d, stderr %q", code, stderr)
	}
	for _, args := range [][]string{
		{"status", "--log"},
		{"status", "-v"},
		{"status"},
		{"status", "--json"},
		{"status", "--format", "{{range .Builders}}{{.Name}} {{.URI}} {{.LastError}}{{end}}"},
		{"pick", "--system", "x\x1b[2J\x1b]0;pwned\a\u009b31m\u202e"},
		{"pick", "--json", "--system", "x\x1b[2J\x1b]0;pwned\a\u009b31m\u202e"},
		{"machines"},
	} {
		stdout, stderr, _ := run(t, nil, env, append(args, "--builders", builders)...)
		if bad := unsafeOutput(stdout + stderr); bad != "" {
			t.Errorf("offload %q prints what a terminal acts on:\n%s", args, bad)
		}
		if len(args) > 1 && args[1] == "--log" && !strings.Contains(stdout, `\x1b[2J`) {
			t.Errorf("offload status --log does not show the escaped system:\n%s", stdout)
		}
	}
}
