// SPDX-License-Identifier: MIT

package slots

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/offload-nix/offload/pkg/pick"
	"github.com/offload-nix/offload/pkg/spec"
)

func TestSetExec(t *testing.T) {
	path := filepath.Join(t.TempDir(), "slots")
	f := open(t, path, []spec.Machine{mach("ssh://a", 4), mach("ssh://b", 2)})
	if b := snap(t, f, "ssh://a"); !b.ExecProbed().IsZero() {
		t.Fatalf("new file: probed at %v", b.ExecProbed())
	}
	at := time.Unix(1_700_000_000, 0)
	f.SetExec("ssh://a", at, []SystemExec{
		{System: "x86_64-linux", Exec: pick.Native},
		{System: "riscv64-linux", Exec: pick.Unknown},
		{System: "aarch64-linux", Exec: pick.Emulated, Qemu: true},
	})
	// Another process sees it.
	g := open(t, path, []spec.Machine{mach("ssh://a", 4), mach("ssh://b", 2)})
	b := snap(t, g, "ssh://a")
	for _, tt := range []struct {
		system string
		exec   pick.Exec
		qemu   bool
	}{
		{"x86_64-linux", pick.Native, false},
		{"aarch64-linux", pick.Emulated, true},
		{"riscv64-linux", pick.Unknown, false},
		{"armv7l-linux", pick.Unknown, false},
	} {
		if e, q := b.ExecOf(tt.system); e != tt.exec || q != tt.qemu {
			t.Errorf("ExecOf(%q) = %d, %v; want %d, %v", tt.system, e, q, tt.exec, tt.qemu)
		}
	}
	if !b.ExecProbed().Equal(at) {
		t.Errorf("ExecProbed = %v, want %v", b.ExecProbed(), at)
	}
	if bb := snap(t, g, "ssh://b"); func() bool { e, _ := bb.ExecOf("x86_64-linux"); return e != pick.Unknown }() {
		t.Errorf("b got a's entries")
	}

	// A later probe replaces the earlier one, also when it found nothing.
	f.SetExec("ssh://a", at.Add(time.Hour), nil)
	b = snap(t, g, "ssh://a")
	if e, _ := b.ExecOf("x86_64-linux"); e != pick.Unknown || !b.ExecProbed().Equal(at.Add(time.Hour)) {
		t.Errorf("after an empty probe: ExecOf = %d, probed %v", e, b.ExecProbed())
	}

	// More systems than fit: the first MaxSystems are kept.
	var many []SystemExec
	for i := range MaxSystems + 3 {
		many = append(many, SystemExec{System: fmt.Sprint("s", i), Exec: pick.Emulated})
	}
	f.SetExec("ssh://a", at, many)
	b = snap(t, g, "ssh://a")
	if e, _ := b.ExecOf(fmt.Sprint("s", MaxSystems-1)); e != pick.Emulated {
		t.Errorf("the last entry that fits is lost")
	}
	if e, _ := b.ExecOf(fmt.Sprint("s", MaxSystems)); e != pick.Unknown {
		t.Errorf("an entry beyond MaxSystems was kept")
	}
}

func TestRememberDrv(t *testing.T) {
	path := filepath.Join(t.TempDir(), "slots")
	f := open(t, path, []spec.Machine{mach("ssh://a", 4)})
	g := open(t, path, []spec.Machine{mach("ssh://a", 4)})
	at := time.Unix(1_700_000_000, 0)
	if fl, _ := g.DrvFlags("hello-2.12", time.Time{}); fl != 0 {
		t.Fatalf("new file remembers hello: %d", fl)
	}
	f.RememberDrv("hello-2.12", DrvEmulationFailed, at)
	if fl, seen := g.DrvFlags("hello-2.12", at.Add(-time.Hour)); fl != DrvEmulationFailed || !seen.Equal(at) {
		t.Errorf("DrvFlags = %d, %v; want %d, %v", fl, seen, DrvEmulationFailed, at)
	}
	if fl, _ := g.DrvFlags("hello-2.12", at.Add(time.Second)); fl != 0 {
		t.Errorf("DrvFlags since after the note = %d, want 0 (forgotten)", fl)
	}
	if fl, _ := g.DrvFlags("hello-2.13", time.Time{}); fl != 0 {
		t.Errorf("another name has flags %d", fl)
	}
	// The table keeps the names noted last.
	for i := range 2 * drvCount {
		f.RememberDrv(fmt.Sprint("pkg-", i), DrvEmulationFailed, at.Add(time.Duration(i+1)*time.Second))
	}
	if fl, _ := g.DrvFlags("hello-2.12", time.Time{}); fl != 0 {
		t.Errorf("the oldest name was not replaced")
	}
	for i := drvCount; i < 2*drvCount; i++ {
		if fl, _ := g.DrvFlags(fmt.Sprint("pkg-", i), time.Time{}); fl != DrvEmulationFailed {
			t.Fatalf("pkg-%d, among the last %d noted, is forgotten", i, drvCount)
		}
	}
	// Read-only files take no notes but read them.
	ro, err := Open(path, nil, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	ro.RememberDrv("ro-1", DrvEmulationFailed, at)
	if fl, _ := ro.DrvFlags("ro-1", time.Time{}); fl != 0 {
		t.Errorf("a read-only File took a note")
	}
	if fl, _ := ro.DrvFlags(fmt.Sprint("pkg-", 2*drvCount-1), time.Time{}); fl != DrvEmulationFailed {
		t.Errorf("a read-only File does not read notes")
	}
}

func BenchmarkDrvFlags(b *testing.B) {
	f := open(b, filepath.Join(b.TempDir(), "slots"), []spec.Machine{mach("ssh://a", 4)})
	at := time.Now()
	for i := range drvCount {
		f.RememberDrv(fmt.Sprint("pkg-", i), DrvEmulationFailed, at)
	}
	b.ReportAllocs()
	for b.Loop() {
		f.DrvFlags("hello-2.12", time.Time{})
	}
}
