// SPDX-License-Identifier: MIT

package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/offload-nix/offload/internal/testenv"
)

func mustParse(t *testing.T, in string) []Machine {
	t.Helper()
	ms, _, err := ParseBuilders(in, Options{LocalSystem: testSystem})
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

func TestLint(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "id_good")
	open := filepath.Join(dir, "id_open")
	os.WriteFile(good, []byte("k"), 0o600)
	os.WriteFile(open, []byte("k"), 0o644)
	os.Chmod(open, 0o644) // whatever the umask
	for _, tt := range []struct {
		name, in string
		want     []string // substrings, one per warning
	}{
		{name: "clean", in: "b1 x86_64-linux " + good + " 2 1 kvm kvm"},
		{name: "listed_twice", in: "b1\nssh://b1 - - 2", want: []string{"builders:2: ssh://b1 is listed twice (first at builders:1)"}},
		{name: "same_host_other_user_is_another_builder", in: "a@b1\nc@b1"},
		{name: "max_jobs_zero", in: "b1 - - 0", want: []string{"max jobs 0"}},
		{name: "no_systems", in: "b1 ,", want: []string{"lists no systems"}},
		{name: "mandatory_not_supported", in: "b1 - - - - kvm big-parallel", want: []string{`mandatory feature "big-parallel" is not also listed as supported; Nix counts mandatory features as supported, so this works`}},
		{name: "key_missing", in: "b1 - " + filepath.Join(dir, "nope"), want: []string{"does not exist"}},
		{name: "key_readable_by_others", in: "b1 - " + open, want: []string{"is readable by others (mode 0644); ssh refuses such keys: chmod 600"}},
		{name: "key_of_local_store_not_checked", in: "/tmp/store - /nope"},
		{name: "localhost_runs_without_ssh", in: "localhost", want: []string{"Nix runs a builder called localhost without SSH"}},
		{name: "localhost_over_ssh_same_store", in: "root@localhost ; ssh://[::1]", want: []string{"is this machine", "is this machine"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ws := Lint(mustParse(t, tt.in), nil)
			if len(ws) != len(tt.want) {
				t.Fatalf("Lint(%q) = %q, want %d warnings like %q", tt.in, ws, len(tt.want), tt.want)
			}
			for i, w := range ws {
				if !strings.Contains(w.String(), tt.want[i]) {
					t.Errorf("Lint(%q)[%d] = %q, want it to contain %q", tt.in, i, w, tt.want[i])
				}
			}
		})
	}
}

func TestFind(t *testing.T) {
	ms := mustParse(t, "root@b1\nssh-ng://b2:2222\nalice@b3\nbob@b3\n/tmp/store")
	for _, tt := range []struct {
		q       string
		want    int
		wantErr string
	}{
		{q: "ssh://root@b1", want: 0},
		{q: "root@b1", want: 0},
		{q: "b1", want: 0},
		{q: "b2", want: 1},
		{q: "ssh-ng://b2:2222", want: 1},
		{q: "ssh://alice@b3", want: 2},
		{q: "bob@b3", want: 3},
		{q: "b3", wantErr: `spec: "b3" names several builders (ssh://alice@b3, ssh://bob@b3): give the URI`},
		{q: "/tmp/store", want: 4},
		{q: "b9", wantErr: `spec: no such builder "b9"`},
	} {
		i, err := Find(ms, tt.q)
		if tt.wantErr != "" {
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("Find(%q) = %d, %v; want error %q", tt.q, i, err, tt.wantErr)
			}
			continue
		}
		if err != nil || i != tt.want {
			t.Errorf("Find(%q) = %d, %v; want %d", tt.q, i, err, tt.want)
		}
	}
	if _, err := Find(ms, "b9"); !errors.Is(err, ErrNoBuilder) {
		t.Errorf("Find(unknown) error %v does not wrap ErrNoBuilder", err)
	}
}

func TestWriteTable(t *testing.T) {
	ms := mustParse(t, "root@b1 aarch64-linux,x86_64-linux - 4 1.5 kvm,big-parallel big-parallel "+hostKey+"\nb2")
	var b bytes.Buffer
	if err := WriteTable(&b, ms); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"HOST           SYSTEMS                     JOBS  SPEED  FEATURES          MANDATORY     HOST-KEY  SOURCE\n" +
		"ssh://root@b1  aarch64-linux,x86_64-linux  4     1.5    big-parallel,kvm  big-parallel  yes       builders:1\n" +
		"ssh://b2       TEST_ARCH-TEST_OS           1     1      -                 -             no        builders:2\n"
	if b.String() != want {
		t.Errorf("WriteTable =\n%s\nwant\n%s", b.String(), want)
	}
}

func TestWriteJSONEmptyValues(t *testing.T) {
	var b bytes.Buffer
	if err := WriteJSON(&b, []Machine{{URI: "ssh://b", Name: "b"}}); err != nil {
		t.Fatal(err)
	}
	var got []map[string]any
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"systems", "supportedFeatures", "mandatoryFeatures"} {
		if l, ok := got[0][k].([]any); !ok || len(l) != 0 {
			t.Errorf("%s = %#v, want []", k, got[0][k])
		}
	}
	for _, k := range []string{"sshKey", "publicHostKey", "source"} {
		if got[0][k] != "" {
			t.Errorf("%s = %#v, want \"\"", k, got[0][k])
		}
	}
	if p, ok := got[0]["params"].(map[string]any); !ok || len(p) != 0 {
		t.Errorf("params = %#v, want {}", got[0]["params"])
	}
	b.Reset()
	WriteJSON(&b, nil)
	if b.String() != "[]\n" {
		t.Errorf("WriteJSON(nil) = %q, want []", b.String())
	}
}

// TestDeps keeps pkg/spec at the bottom of the graph: it must not import
// net or os/exec itself, nor any offload package. golang.org/x/crypto/ssh,
// used only to parse host keys, does import net.
func TestDeps(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		testenv.Skip(t, "go tool not found")
	}
	out, err := exec.Command(goTool, "list", "-f", `{{join .Imports "\n"}}`, ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, imp := range strings.Fields(string(out)) {
		switch {
		case imp == "net", strings.HasPrefix(imp, "net/"), imp == "os/exec", imp == "syscall":
			t.Errorf("pkg/spec imports %s", imp)
		case strings.HasPrefix(imp, "github.com/offload-nix/"):
			t.Errorf("pkg/spec imports %s; it must stay at the bottom", imp)
		case strings.Contains(imp, ".") && imp != "golang.org/x/crypto/ssh":
			t.Errorf("pkg/spec imports %s; only golang.org/x/crypto/ssh is allowed outside the standard library", imp)
		}
	}
}
