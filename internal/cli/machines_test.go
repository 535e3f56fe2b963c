// SPDX-License-Identifier: MIT

package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// With no builders, machines prints no empty table: it says where it
// looked (the builders setting, where that comes from, the files it names)
// and what to do, and fails as check does.
func TestMachinesNoBuilders(t *testing.T) {
	for _, tt := range []struct {
		name     string
		nixConf  string // "" for none
		machines string // "" for none
		args     []string
		stdout   string
		err      string // the error line, after "offload: "; DIR is the config dir
	}{
		{"nothing", "", "", nil, "",
			"machines: no builders: builders is not set in Nix's configuration (DIR/nix.conf), and DIR/machines, Nix's default, does not exist"},
		{"empty machines file", "", "# later\n", nil, "",
			"machines: no builders: builders is not set in Nix's configuration (DIR/nix.conf), and DIR/machines, Nix's default, lists none"},
		{"empty setting", "sandbox = false\nbuilders =\n", "", nil, "",
			"machines: no builders: builders is empty (DIR/nix.conf:2)"},
		{"missing file", "builders = @DIR/mine\n", "", nil, "",
			"machines: no builders: builders = @DIR/mine (DIR/nix.conf:1), and DIR/mine does not exist"},
		{"flag", "", "ssh://b1 x86_64-linux\n", []string{"--builders", ";"}, "",
			"machines: no builders: builders = ; (--builders)"},
		{"json", "", "", []string{"--json"}, "[]\n",
			"machines: no builders: builders is not set in Nix's configuration (DIR/nix.conf), and DIR/machines, Nix's default, does not exist"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.nixConf != "" {
				os.WriteFile(filepath.Join(dir, "nix.conf"), []byte(strings.ReplaceAll(tt.nixConf, "DIR", dir)), 0o644)
			}
			if tt.machines != "" {
				os.WriteFile(filepath.Join(dir, "machines"), []byte(tt.machines), 0o644)
			}
			env := map[string]string{"NIX_CONF_DIR": dir, "NIX_USER_CONF_FILES": filepath.Join(dir, "none"), "OFFLOAD_STATE_DIR": filepath.Join(dir, "state")}
			stdout, stderr, code := run(t, nil, env, append([]string{"machines"}, tt.args...)...)
			want := "offload: " + strings.ReplaceAll(tt.err, "DIR", dir) + "\n" +
				"offload: hint: add builders to " + dir + "/machines or set builders = … in " + dir + "/nix.conf; see `offload setup`\n"
			if code != ExitFailed || stdout != tt.stdout || stderr != want {
				t.Errorf("offload machines %q = %d\nstdout: %q\nstderr: %s\nwant %d, stdout %q, stderr:\n%s", tt.args, code, stdout, stderr, ExitFailed, tt.stdout, want)
			}
		})
	}
}
