// SPDX-License-Identifier: MIT

package remoteload

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/offload-nix/offload/internal/testenv"
	"github.com/offload-nix/offload/pkg/pick"
)

func TestParsePlatform(t *testing.T) {
	out := "motd\noffload-load 1\ncpus 2\n" +
		"uname x86_64\n" +
		"nixconf system = x86_64-linux\n" +
		"nixconf extra-platforms = i686-linux\n" +
		"nixconf extra-platforms = aarch64-linux riscv64-linux armv7l-linux\n" +
		"nixconf system-features = kvm\n" +
		"binfmt-status enabled\n" +
		"binfmt qemu-aarch64 enabled /usr/libexec/qemu-binfmt/aarch64-binfmt-P\n" +
		"binfmt qemu-mips disabled /usr/libexec/qemu-binfmt/mips-binfmt-P\n" +
		"binfmt riscv64-linux enabled /run/binfmt/riscv64-linux\n" +
		"binfmt broken\n" +
		"end\n"
	got := ParsePlatform([]byte(out))
	want := Platform{
		Machine:        "x86_64",
		System:         "x86_64-linux",
		ExtraPlatforms: []string{"aarch64-linux", "riscv64-linux", "armv7l-linux"},
		Binfmt: []Binfmt{
			{Name: "qemu-aarch64", Interpreter: "/usr/libexec/qemu-binfmt/aarch64-binfmt-P"},
			{Name: "riscv64-linux", Interpreter: "/run/binfmt/riscv64-linux"},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ParsePlatform() =\n%+v\nwant\n%+v", got, want)
	}
	for _, tt := range []struct {
		system string
		exec   pick.Exec
		via    string
	}{
		{"x86_64-linux", pick.Native, ""},
		{"i686-linux", pick.Native, ""},
		{"aarch64-linux", pick.Emulated, "qemu-aarch64"},
		{"riscv64-linux", pick.Emulated, "riscv64-linux"},
		{"armv7l-linux", pick.Emulated, ""}, // extra-platforms only
		{"powerpc64le-linux", pick.Unknown, ""},
		{"aarch64-darwin", pick.Unknown, ""},
		{"", pick.Unknown, ""},
	} {
		e, via := got.Exec(tt.system)
		if e != tt.exec || via != tt.via {
			t.Errorf("Exec(%q) = %v, %q; want %v, %q", tt.system, e, via, tt.exec, tt.via)
		}
	}

	// binfmt_misc disabled as a whole: no interpreter runs.
	off := ParsePlatform([]byte(strings.Replace(out, "binfmt-status enabled", "binfmt-status disabled", 1)))
	if off.Binfmt != nil {
		t.Errorf("with binfmt_misc disabled, Binfmt = %v", off.Binfmt)
	}
	// No header, or a garbled uname: nothing, and no error to anyone.
	if p := ParsePlatform([]byte("uname x86_64\n")); p.Known() {
		t.Errorf("ParsePlatform without header = %+v", p)
	}
	if p := ParsePlatform([]byte("offload-load 1\nuname x86_64\nuname aarch64\nend\n")); p.Machine != "" {
		t.Errorf("two uname lines gave Machine %q", p.Machine)
	}
}

func TestExecRules(t *testing.T) {
	for _, tt := range []struct {
		name   string
		p      Platform
		system string
		exec   pick.Exec
	}{
		{"system setting wins", Platform{Machine: "x86_64", System: "aarch64-linux", Binfmt: []Binfmt{{"qemu-aarch64", "/q"}}}, "aarch64-linux", pick.Native},
		{"aarch64 kernel runs armv7l", Platform{Machine: "aarch64"}, "armv7l-linux", pick.Native},
		{"aarch64 kernel with qemu-arm", Platform{Machine: "aarch64", Binfmt: []Binfmt{{"qemu-arm", "/usr/bin/qemu-arm-static"}}}, "armv7l-linux", pick.Emulated},
		{"armv7l kernel runs armv6l", Platform{Machine: "armv7l"}, "armv6l-linux", pick.Native},
		{"riscv64 kernel", Platform{Machine: "riscv64"}, "riscv64-linux", pick.Native},
		{"interpreter file name", Platform{Machine: "x86_64", Binfmt: []Binfmt{{"whatever", "/usr/bin/qemu-riscv64-static"}}}, "riscv64-linux", pick.Emulated},
		{"nothing known", Platform{}, "aarch64-linux", pick.Unknown},
		{"extra-platforms without kernel", Platform{ExtraPlatforms: []string{"x86_64-darwin"}}, "x86_64-darwin", pick.Emulated},
	} {
		if e, _ := tt.p.Exec(tt.system); e != tt.exec {
			t.Errorf("%s: Exec(%q) = %v, want %v", tt.name, tt.system, e, tt.exec)
		}
	}
}

// TestScriptPlatform runs the real script with /bin/sh and a nix.conf of
// its own.
func TestScriptPlatform(t *testing.T) {
	if runtime.GOOS != "linux" {
		testenv.Skip(t, "the script's platform part reads Linux files")
	}
	dir := t.TempDir()
	conf := "sandbox = false\nsystem-features = kvm\n  system = aarch64-linux\nextra-platforms = riscv64-linux armv7l-linux\n"
	if err := os.WriteFile(filepath.Join(dir, "nix.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(Command)
	cmd.Stdin = strings.NewReader(Script)
	cmd.Env = append(os.Environ(), "NIX_CONF_DIR="+dir, "NIX_CONFIG=extra-platforms = mips64el-linux")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v", Command, err)
	}
	r, p, err := ParseAll(out)
	if err != nil || r.CPUs < 1 {
		t.Fatalf("ParseAll = %+v, %v\n%s", r, err, out)
	}
	uname, _ := exec.Command("uname", "-m").Output()
	if p.Machine != strings.TrimSpace(string(uname)) || p.System != "aarch64-linux" {
		t.Errorf("platform %+v, want machine %q and system aarch64-linux\n%s", p, uname, out)
	}
	if !reflect.DeepEqual(p.ExtraPlatforms, []string{"mips64el-linux"}) {
		t.Errorf("ExtraPlatforms = %q, want NIX_CONFIG's to come last", p.ExtraPlatforms)
	}
	if e, _ := p.Exec("aarch64-linux"); e != pick.Native {
		t.Errorf("Exec(aarch64-linux) = %v with system = aarch64-linux", e)
	}
}

func FuzzParsePlatform(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.txt")
	for _, p := range files {
		b, _ := os.ReadFile(p)
		f.Add(b)
	}
	f.Add([]byte("offload-load 1\nuname aarch64\nbinfmt-status enabled\nbinfmt qemu-arm enabled /usr/bin/qemu-arm-static\nend\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		p := ParsePlatform(in)
		if len(p.Binfmt) > maxBinfmt || strings.ContainsAny(p.Machine, " \t\n") || strings.ContainsAny(p.System, " \t\n") {
			t.Fatalf("ParsePlatform(%q) = %+v", in, p)
		}
		for _, s := range []string{"aarch64-linux", "armv7l-linux", "x86_64-linux", "riscv64-linux", p.System} {
			e, via := p.Exec(s)
			if e > pick.Emulated || e != pick.Emulated && via != "" {
				t.Fatalf("Exec(%q) of %+v = %v, %q", s, p, e, via)
			}
		}
		r, p2, err := ParseAll(in)
		r1, err1 := Parse(in)
		if r != r1 || (err == nil) != (err1 == nil) || !reflect.DeepEqual(p, p2) {
			t.Fatalf("ParseAll(%q) disagrees with Parse and ParsePlatform", in)
		}
	})
}
