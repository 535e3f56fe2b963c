// SPDX-License-Identifier: MIT

package slots

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/offload-nix/offload/pkg/spec"
)

// A link measure is unknown in a new record (and so in a file of before
// it, whose word was reserved and zero), is kept in the record's word at
// 504 for every process, and changes whole under concurrent writers.
func TestLink(t *testing.T) {
	path := filepath.Join(t.TempDir(), "slots")
	ms := []spec.Machine{mach("ssh://a", 1), mach("ssh://b", 1)}
	f := open(t, path, ms)
	g := open(t, path, ms)
	if l := f.Snapshot(nil)[0].Link; l != (Link{}) {
		t.Fatalf("new record's link = %+v, want unknown", l)
	}
	want := Link{Rate: 1<<32 - 1, Ratio: 2000, Plain: 16, Since: SinceNone, NoFetch: MaxNoFetch}
	if l, ok := f.UpdateLink("ssh://a", func(Link) Link { return want }); !ok || l != want {
		t.Fatalf("UpdateLink = %+v, %v; want %+v, true", l, ok, want)
	}
	if l := g.Snapshot(nil)[0].Link; l != want {
		t.Errorf("the other process reads %+v, want %+v", l, want)
	}
	if l := g.Snapshot(nil)[1].Link; l != (Link{}) {
		t.Errorf("the other builder's link = %+v, want unknown", l)
	}
	if l, _ := f.UpdateLink("ssh://a", func(l Link) Link { l.Ratio = 60000; return l }); l.Ratio != MaxRatio {
		t.Errorf("ratio 60000 stored as %d, want %d", l.Ratio, MaxRatio)
	}
	if l, _ := f.UpdateLink("ssh://b", func(l Link) Link { l.NoFetch = 200; return l }); l.NoFetch != MaxNoFetch || l.Since != 0 {
		t.Errorf("NoFetch 200 stored as %+v, want %d and nothing else", l, MaxNoFetch)
	}
	if _, ok := f.UpdateLink("ssh://nope", func(l Link) Link { t.Error("next called for an unknown builder"); return l }); ok {
		t.Error("UpdateLink of an unknown builder succeeded")
	}

	f.UpdateLink("ssh://b", func(Link) Link { return Link{} })
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(2)
		for _, h := range []*File{f, g} {
			go func() {
				defer wg.Done()
				for range 500 {
					h.UpdateLink("ssh://b", func(l Link) Link { l.Rate++; l.Since = uint8(l.Rate); return l })
				}
			}()
		}
	}
	wg.Wait()
	if l := f.Snapshot(nil)[1].Link; l.Rate != 8000 || l.Since != 8000%256 {
		t.Errorf("after 8000 concurrent updates: %+v", l)
	}

	// The word is the record's at 504, in the documented bits.
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	w := binary.NativeEndian.Uint64(b[headerSize+504:])
	if got := w &^ (1<<32 - 1); got != uint64(MaxRatio)<<32|16<<44|SinceNone<<52|MaxNoFetch<<60 {
		t.Errorf("record word at 504 = %#x", w)
	}
	ro, err := Open(path, ms, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if _, ok := ro.UpdateLink("ssh://a", func(l Link) Link { return Link{} }); ok {
		t.Error("UpdateLink on a read-only file succeeded")
	}
	if l := ro.Snapshot(nil)[0].Link; l.Rate != 1<<32-1 || l.Ratio != MaxRatio {
		t.Errorf("read-only Snapshot: %+v", l)
	}
}
