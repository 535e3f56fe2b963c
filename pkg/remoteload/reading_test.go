// SPDX-License-Identifier: MIT

package remoteload

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/offload-nix/offload/pkg/pick"
)

// all returns an all-unknown reading changed by f.
func all(f func(r *pick.Reading)) pick.Reading {
	r := pick.ReadingUnknownAt(time.Time{})
	if f != nil {
		f(&r)
	}
	return r
}

var parseTests = []struct {
	name string
	in   string
	want pick.Reading
	err  error
}{
	{"linux", readTestdata("linux.txt"), all(func(r *pick.Reading) {
		r.CPUs = 2
		r.Load1, r.Load5, r.Load15 = 10130, 9870, 9410
		r.CPUPressure, r.MemoryPressure, r.IOPressure = 6536, 0, 317
		r.MemTotal, r.MemAvailable = 24683620*1024, 24134492*1024
		r.StoreSize, r.StoreFree = 264212084*1024, 77331084*1024
		r.Builds = 12
	}), nil},
	{"darwin", readTestdata("darwin.txt"), all(func(r *pick.Reading) {
		r.CPUs = 10
		r.Load1, r.Load5, r.Load15 = 2410, 2300, 2190
		r.StoreSize, r.StoreFree = 482797652*1024, 200000000*1024
	}), nil},
	// Shell noise before the header; hidepid hides other users' builds
	// from a non-root login; a filesystem of size 0 says nothing.
	{"noisy hidepid", readTestdata("noisy-hidepid.txt"), all(func(r *pick.Reading) {
		r.CPUs = 64
		r.Load1, r.Load5, r.Load15 = 70000, 60000, 50000
		r.MemTotal, r.MemAvailable = 263000000*1024, 1000000*1024
	}), nil},
	{"hidepid root", "offload-load 1\nprocfs rw,hidepid=2\nuid 0\nbuilds 3\n", all(func(r *pick.Reading) { r.Builds = 3 }), nil},
	{"hidepid no uid", "offload-load 1\nprocfs rw,hidepid=2\nbuilds 3\n", all(nil), nil},
	{"hidepid off", "offload-load 1\nprocfs rw,hidepid=0\nuid 7\nbuilds 3\n", all(func(r *pick.Reading) { r.Builds = 3 }), nil},
	{"forced command", readTestdata("forced-command.txt"), all(nil), ErrFormat},
	{"empty", "", all(nil), ErrFormat},
	{"header cut short", "offload-load 1", all(nil), ErrFormat},
	{"header version 0", "offload-load 0\ncpus 3\n", all(nil), ErrFormat},
	{"later version", "offload-load 2\ncpus 3\nnewkey 5\n", all(func(r *pick.Reading) { r.CPUs = 3 }), nil},
	{"cut short", readTestdata("cut-short.txt"), all(func(r *pick.Reading) {
		r.CPUs = 4
		r.Load1, r.Load5, r.Load15 = 1000, 1000, 1000
	}), nil},
	{"after end", "offload-load 1\nend\ncpus 3\n", all(nil), nil},
	{"crlf", "offload-load 1\r\ncpus 3\r\n", all(func(r *pick.Reading) { r.CPUs = 3 }), nil},
	{"twice", "offload-load 1\ncpus 3\ncpus 3\nbuilds 1\n", all(func(r *pick.Reading) { r.Builds = 1 }), nil},
	{"empty values", "offload-load 1\ncpus \nbuilds \nloadavg \nmeminfo MemTotal:  kB\n", all(nil), nil},
	{"no awk", "offload-load 1\nbuilds\n", all(nil), nil},
	{"bad numbers", "offload-load 1\ncpus 0\nbuilds -1\nloadavg 1e3 1 1 1/1 1\n" +
		"pressure cpu some avg10=NaN\npressure io some avg10=100.01 avg60=0\n" +
		"pressure memory some avg10=+1\nmeminfo MemTotal: 12 MB\nmeminfo MemAvailable: 99999999999999999999 kB\n", all(nil), nil},
	{"huge", "offload-load 1\ncpus 65537\nbuilds 65537\nloadavg 1000001 0 0\n", all(nil), nil},
	{"load rounds down", "offload-load 1\nloadavg 0.1239 .5 7 1/1 1\nloadavg-other 1\n", all(nil), nil},
	{"load", "offload-load 1\nloadavg 0.1239 0.5 7.\n", all(nil), nil},
	{"load plain", "offload-load 1\nloadavg 0.1239 0.5 7\n", all(func(r *pick.Reading) { r.Load1, r.Load5, r.Load15 = 123, 500, 7000 }), nil},
	{"pressure full only", "offload-load 1\npressure memory full avg10=50.00\n", all(nil), nil},
	{"pressure no avg10", "offload-load 1\npressure memory some avg60=50.00\n", all(nil), nil},
	{"pressure 100", "offload-load 1\npressure memory some avg10=100.00 avg60=1\n", all(func(r *pick.Reading) { r.MemoryPressure = 10000 }), nil},
	{"available above total", "offload-load 1\nmeminfo MemTotal: 10 kB\nmeminfo MemAvailable: 11 kB\n", all(func(r *pick.Reading) { r.MemTotal = 10240 }), nil},
	{"df spaces", "offload-load 1\ndf Filesystem 1024-blocks Used Available Capacity Mounted on\ndf my fs 100 40 60 40% /nix store\n",
		all(func(r *pick.Reading) { r.StoreSize, r.StoreFree = 102400, 61440 }), nil},
	{"df free above size", "offload-load 1\ndf fs 100 40 160 40% /\n", all(nil), nil},
	{"df two lines", "offload-load 1\ndf a 100 40 60 40% /\ndf b 100 40 60 40% /\n", all(nil), nil},
	{"df dash", "offload-load 1\ndf none 100 0 100 - /\n", all(nil), nil},
}

func readTestdata(name string) string {
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		panic(err)
	}
	return string(b)
}

func TestParse(t *testing.T) {
	for _, tt := range parseTests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.in))
			if !errors.Is(err, tt.err) || (err == nil) != (tt.err == nil) {
				t.Errorf("Parse(%q) error = %v, want %v", tt.in, err, tt.err)
			}
			if got != tt.want {
				t.Errorf("Parse(%q) =\n%+v, want\n%+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseTooLong(t *testing.T) {
	in := "offload-load 1\ncpus 4\n" + strings.Repeat("x\n", MaxOutput)
	got, err := Parse([]byte(in))
	if err == nil || got != all(nil) {
		t.Errorf("Parse(%d bytes) = %+v, %v; want all unknown and an error", len(in), got, err)
	}
	in = "offload-load 1\ncpus 4\n" + strings.Repeat("x", MaxOutput-len("offload-load 1\ncpus 4\n"))
	if got, err := Parse([]byte(in)); err != nil || got.CPUs != 4 {
		t.Errorf("Parse(%d bytes) = %+v, %v; want 4 CPUs", len(in), got, err)
	}
}

var at = time.Date(2025, 5, 1, 10, 0, 0, 0, time.UTC)

func TestString(t *testing.T) {
	linux, _ := Parse([]byte(readTestdata("linux.txt")))
	darwin, _ := Parse([]byte(readTestdata("darwin.txt")))
	tests := []struct {
		r    pick.Reading
		want string
	}{
		{linux, "2 CPUs, load 10.13 9.87 9.41, pressure cpu 65.36 % memory 0 % io 3.17 %, memory 23 GiB available of 23.5 GiB, store 73.7 GiB free of 252 GiB, 12 builds"},
		{darwin, "10 CPUs, load 2.41 2.3 2.19, store 191 GiB free of 460 GiB"},
		{all(nil), "unknown"},
		{all(func(r *pick.Reading) { r.CPUs, r.Builds = 1, 1 }), "1 CPU, 1 build"},
		{all(func(r *pick.Reading) { r.MemoryPressure, r.MemTotal = 4100, 1<<30 }), "pressure memory 41 %, memory 1 GiB"},
		{all(func(r *pick.Reading) { r.StoreFree, r.StoreSize = 1288490188, 1<<40 }), "store 1.2 GiB free of 1 TiB"},
		{all(func(r *pick.Reading) { r.StoreFree, r.StoreSize = 812<<20, 999 }), "store 812 MiB free of 999 B"},
	}
	for _, tt := range tests {
		if got := tt.r.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
}

func TestFormat(t *testing.T) {
	r := all(func(r *pick.Reading) { r.CPUs, r.Builds = 8, 0 })
	tests := []struct {
		time time.Time
		want string
	}{
		{time.Time{}, "no reading"},
		{at.Add(-3 * time.Second), "8 CPUs, 0 builds (3 s ago)"},
		{at.Add(time.Second), "8 CPUs, 0 builds (0 s ago)"},
		{at.Add(-5 * time.Minute), "8 CPUs, 0 builds (5 min ago)"},
		{at.Add(-50 * time.Hour), "8 CPUs, 0 builds (50 h ago)"},
	}
	for _, tt := range tests {
		r.Time = tt.time
		if got := r.Format(at); got != tt.want {
			t.Errorf("Format(%v) = %q, want %q", tt.time, got, tt.want)
		}
	}
	if got := all(nil); true {
		got.Time = at
		if s := got.Format(at); s != "unknown (0 s ago)" {
			t.Errorf("Format of an unknown reading = %q", s)
		}
	}
}

func TestMarshalJSON(t *testing.T) {
	r, _ := Parse([]byte(readTestdata("linux.txt")))
	r.Time = at
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"time":"2025-05-01T10:00:00Z","cpus":2,"load":[10.13,9.87,9.41],"pressure":{"cpu":65.36,"memory":0,"io":3.17},"mem_available":24713719808,"mem_total":25276026880,"store_free":79187030016,"store_size":270553174016,"builds":12}`
	if string(b) != want {
		t.Errorf("json.Marshal = %s\nwant %s", b, want)
	}
	b, _ = json.Marshal(all(nil))
	want = `{"time":null,"cpus":null,"load":null,"pressure":{"cpu":null,"memory":null,"io":null},"mem_available":null,"mem_total":null,"store_free":null,"store_size":null,"builds":null}`
	if string(b) != want {
		t.Errorf("json.Marshal(unknown) = %s\nwant %s", b, want)
	}
}

func TestEmpty(t *testing.T) {
	if !all(nil).Empty() || !pick.ReadingUnknownAt(at).Empty() {
		t.Error("an unknown reading is not Empty")
	}
	if all(func(r *pick.Reading) { r.Builds = 0 }).Empty() {
		t.Error("a reading with 0 builds is Empty")
	}
}

func FuzzParse(f *testing.F) {
	for _, tt := range parseTests {
		f.Add([]byte(tt.in))
	}
	files, _ := filepath.Glob("testdata/*.txt")
	for _, p := range files {
		b, _ := os.ReadFile(p)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := Parse(in)
		if err != nil && r != all(nil) {
			t.Fatalf("Parse(%q) = %+v with error %v, want all unknown", in, r, err)
		}
		if !r.Time.IsZero() {
			t.Fatalf("Parse(%q) set Time", in)
		}
		ints := []int{r.CPUs, r.Load1, r.Load5, r.Load15, r.CPUPressure, r.MemoryPressure, r.IOPressure, r.Builds}
		for _, v := range ints {
			if v < pick.ReadingUnknown {
				t.Fatalf("Parse(%q) = %+v: field below pick.ReadingUnknown", in, r)
			}
		}
		for _, v := range []int64{r.MemAvailable, r.MemTotal, r.StoreFree, r.StoreSize} {
			if v < pick.ReadingUnknown {
				t.Fatalf("Parse(%q) = %+v: field below pick.ReadingUnknown", in, r)
			}
		}
		if r.CPUs == 0 || r.CPUPressure > 10000 || r.MemoryPressure > 10000 || r.IOPressure > 10000 {
			t.Fatalf("Parse(%q) = %+v: out of range", in, r)
		}
		if (r.Load1 == pick.ReadingUnknown) != (r.Load15 == pick.ReadingUnknown) || (r.StoreFree == pick.ReadingUnknown) != (r.StoreSize == pick.ReadingUnknown) {
			t.Fatalf("Parse(%q) = %+v: half a field", in, r)
		}
		if r.StoreFree > r.StoreSize || r.MemTotal != pick.ReadingUnknown && r.MemAvailable > r.MemTotal {
			t.Fatalf("Parse(%q) = %+v: free above size", in, r)
		}
		if r.String() == "" {
			t.Fatalf("String() of %+v is empty", r)
		}
		if b, err := json.Marshal(r); err != nil || !json.Valid(b) {
			t.Fatalf("json.Marshal(%+v) = %s, %v", r, b, err)
		}
	})
}
