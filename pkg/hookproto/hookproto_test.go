// SPDX-License-Identifier: MIT

package hookproto

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/offload-nix/offload/pkg/pick"
	"github.com/offload-nix/offload/pkg/wire"
)

func encode(t testing.TB, settings map[string]string, reqs []Request, tail func(w *wire.Writer)) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := wire.NewWriter(&buf)
	WriteSettings(w, settings, nil)
	for i := range reqs {
		WriteRequest(w, &reqs[i])
	}
	if tail != nil {
		tail(w)
	}
	w.Flush()
	return buf.Bytes()
}

// The byte layout Nix 2.8 writes (DerivationGoal::tryBuildHook): a try
// for an x86_64-linux derivation, amWilling 0, no features.
func TestReadRequestNix28Layout(t *testing.T) {
	in := []byte{}
	u64 := func(n byte) { in = append(in, n, 0, 0, 0, 0, 0, 0, 0) }
	str := func(s string) {
		u64(byte(len(s)))
		in = append(in, s...)
		for len(in)%8 != 0 {
			in = append(in, 0)
		}
	}
	u64(1)
	str("builders")
	str("ssh://dummy x86_64-linux")
	u64(0)
	str("try")
	u64(0)
	str("x86_64-linux")
	str("/nix/store/9jgfsv8b5r3hhgbzhqm81wb0rrvikzsb-t-ok.drv")
	u64(0)
	// After accept: no inputs, one wanted output.
	u64(0)
	u64(1)
	str("out")

	r := wire.NewReader(bytes.NewReader(in))
	s, err := ReadSettings(r)
	if err != nil {
		t.Fatal(err)
	}
	if s["builders"] != "ssh://dummy x86_64-linux" {
		t.Errorf("builders = %q", s["builders"])
	}
	var req Request
	if err := ReadRequest(r, &req); err != nil {
		t.Fatal(err)
	}
	want := Request{System: "x86_64-linux", DrvPath: "/nix/store/9jgfsv8b5r3hhgbzhqm81wb0rrvikzsb-t-ok.drv"}
	if !sameRequest(req, want) {
		t.Errorf("ReadRequest = %+v, want %+v", req, want)
	}
	inputs, wanted, err := ReadAccepted(r)
	if err != nil || len(inputs) != 0 || !reflect.DeepEqual(wanted, []string{"out"}) {
		t.Errorf("ReadAccepted = %q, %q, %v", inputs, wanted, err)
	}
}

func TestReadRequestRoundTrip(t *testing.T) {
	reqs := []Request{
		{AmWilling: true, System: "aarch64-linux", DrvPath: "/nix/store/aaaa-a.drv", Features: []string{"big-parallel", "kvm"}},
		{System: "builtin", DrvPath: "/nix/store/bbbb-b.drv", Features: []string{}},
	}
	in := encode(t, map[string]string{"system": "x86_64-linux", "max-jobs": "0"}, reqs, nil)
	r := wire.NewReader(bytes.NewReader(in))
	s, err := ReadSettings(r)
	if err != nil || s["system"] != "x86_64-linux" || s["max-jobs"] != "0" {
		t.Fatalf("ReadSettings = %v, %v", s, err)
	}
	var got Request
	for i, want := range reqs {
		if err := ReadRequest(r, &got); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if !sameRequest(got, want) {
			t.Errorf("request %d = %+v, want %+v", i, got, want)
		}
	}
	if err := ReadRequest(r, &got); err != io.EOF {
		t.Errorf("after the last request: %v, want io.EOF", err)
	}
}

func sameRequest(a, b Request) bool {
	return a.AmWilling == b.AmWilling && a.System == b.System && a.DrvPath == b.DrvPath &&
		len(a.Features) == len(b.Features) && (len(a.Features) == 0 || reflect.DeepEqual(a.Features, b.Features))
}

func TestReadRequestBad(t *testing.T) {
	full := encode(t, nil, []Request{{System: "x86_64-linux", DrvPath: "/nix/store/x.drv", Features: []string{"kvm"}}}, nil)
	settingsLen := 8
	for cut := settingsLen + 1; cut < len(full); cut++ {
		r := wire.NewReader(bytes.NewReader(full[:cut]))
		if _, err := ReadSettings(r); err != nil {
			t.Fatal(err)
		}
		var req Request
		err := ReadRequest(r, &req)
		if err == nil || err == io.EOF {
			t.Errorf("request cut at %d bytes: err = %v, want an error", cut, err)
		}
	}

	notTry := encode(t, nil, nil, func(w *wire.Writer) { w.String("tri") })
	r := wire.NewReader(bytes.NewReader(notTry))
	ReadSettings(r)
	var req Request
	if err := ReadRequest(r, &req); !errors.Is(err, ErrNotTry) {
		t.Errorf("ReadRequest(tri) = %v, want ErrNotTry", err)
	}

	huge := encode(t, nil, nil, func(w *wire.Writer) {
		w.String("try")
		w.Bool(false)
		w.Uint64(1 << 60)
	})
	r = wire.NewReader(bytes.NewReader(huge))
	ReadSettings(r)
	if err := ReadRequest(r, &req); err == nil || !strings.Contains(err.Error(), "longer") {
		t.Errorf("ReadRequest(huge system) = %v, want a length error", err)
	}
}

func TestLoggerLines(t *testing.T) {
	var buf bytes.Buffer
	l := NewLogger(&buf, LvlInfo)
	l.Infof("# accept\nfake line %s", "\xff\x00\"q\"")
	l.Debugf("not shown at info")
	id := l.Start(LvlInfo, ActCopyPaths, "copying 2 paths", "a", 3, int64(-1))
	l.Result(id, ResProgress, 1, 2, 0, 0)
	l.Stop(id)
	l.Answer(pick.Postpone)
	l.Accept("ssh://b1\n# decline")
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	var answers []string
	for _, line := range lines {
		if strings.HasPrefix(line, "# ") {
			answers = append(answers, line)
			continue
		}
		js, ok := strings.CutPrefix(line, "@nix ")
		if !ok {
			if line == "ssh://b1# decline" {
				continue
			}
			t.Errorf("line %q is neither an answer nor @nix JSON", line)
			continue
		}
		var v map[string]any
		if err := json.Unmarshal([]byte(js), &v); err != nil {
			t.Errorf("line %q: %v", line, err)
		}
		if f, ok := v["fields"].([]any); ok {
			for _, x := range f {
				if n, ok := x.(float64); ok && n < 0 {
					t.Errorf("negative field in %q: Nix fails the build on it", line)
				}
			}
		}
	}
	if want := []string{"# postpone", "# accept"}; !reflect.DeepEqual(answers, want) {
		t.Errorf("answers = %q, want %q", answers, want)
	}
	if strings.Contains(buf.String(), "not shown") {
		t.Errorf("debug message written at verbosity info")
	}
}

func FuzzReadRequest(f *testing.F) {
	f.Add(encode(f, map[string]string{"builders": "@/etc/nix/machines"}, []Request{{System: "x86_64-linux", DrvPath: "/nix/store/a.drv"}}, nil))
	f.Add(encode(f, nil, []Request{{AmWilling: true, System: "aarch64-linux", DrvPath: "/nix/store/b.drv", Features: []string{"kvm"}}}, func(w *wire.Writer) {
		w.Strings([]string{"/nix/store/in"})
		w.Strings([]string{"out"})
	}))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := wire.NewReader(bytes.NewReader(in))
		if _, err := ReadSettings(r); err != nil {
			return
		}
		var req Request
		for i := 0; i < 4; i++ {
			if err := ReadRequest(r, &req); err != nil {
				return
			}
		}
		ReadAccepted(r)
	})
}

func BenchmarkReadRequest(b *testing.B) {
	one := encode(b, nil, []Request{{AmWilling: true, System: "aarch64-linux", DrvPath: "/nix/store/9jgfsv8b5r3hhgbzhqm81wb0rrvikzsb-hello-2.12.drv", Features: []string{"big-parallel"}}}, nil)[8:]
	rd := bytes.NewReader(one)
	r := wire.NewReader(rd)
	var req Request
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(one)
		if err := ReadRequest(r, &req); err != nil {
			b.Fatal(err)
		}
	}
}

// The answers as Nix reads them, byte for byte: Nix compares the line after
// "# " with each answer word, and takes the line after "# accept" raw as the
// machine's name, so neither a newline nor a carriage return may reach it.
func TestLoggerAnswers(t *testing.T) {
	for _, tt := range []struct {
		write func(l *Logger) error
		want  string
	}{
		{func(l *Logger) error { return l.Answer(pick.Decline) }, "# decline\n"},
		{func(l *Logger) error { return l.Answer(pick.Postpone) }, "# postpone\n"},
		{func(l *Logger) error { return l.Answer(pick.DeclinePermanently) }, "# decline-permanently\n"},
		{func(l *Logger) error { return l.Accept("ssh://b1") }, "# accept\nssh://b1\n"},
		{func(l *Logger) error { return l.Accept("ssh://b1\r\n# decline\r") }, "# accept\nssh://b1# decline\n"},
		{func(l *Logger) error { return l.Accept("\rssh://b\r1") }, "# accept\nssh://b1\n"},
	} {
		var buf bytes.Buffer
		if err := tt.write(NewLogger(&buf, LvlError)); err != nil {
			t.Errorf("writing %q: %v", tt.want, err)
		}
		if got := buf.String(); got != tt.want {
			t.Errorf("wrote %q, want %q", got, tt.want)
		}
	}
	if err := NewLogger(io.Discard, LvlError).Answer(pick.Accept); err == nil {
		t.Errorf("Answer(Accept) without a machine: no error")
	}
	if err := NewLogger(io.Discard, LvlError).Answer(pick.NoAnswer); err == nil {
		t.Errorf("Answer(NoAnswer): no error")
	}
}
