// SPDX-License-Identifier: MIT

package store

import (
	"bytes"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/offload-nix/offload/pkg/wire"
)

func TestReadBuiltOutputs(t *testing.T) {
	const id = "sha256:1111111111111111111111111111111111111111111111111111111111111111!out"
	tests := []struct {
		name    string
		send    func(w *wire.Writer)
		want    []BuiltOutput
		wantErr string
	}{
		{"none", func(w *wire.Writer) { w.Uint64(0) }, nil, ""},
		{"one", func(w *wire.Writer) {
			w.Uint64(1)
			w.String(id)
			w.String(`{"outPath":"abc-x"}`)
		}, []BuiltOutput{{Name: "out", ID: id, OutPath: "abc-x", Realisation: `{"outPath":"abc-x"}`}}, ""},
		{"realisation not JSON", func(w *wire.Writer) {
			w.Uint64(1)
			w.String(id)
			w.String("{")
		}, []BuiltOutput{{Name: "out", ID: id, Realisation: "{"}}, ""},
		{"bad id", func(w *wire.Writer) {
			w.Uint64(1)
			w.String("sha256:11")
			w.String("{}")
		}, nil, "invalid derivation output id"},
		{"too many", func(w *wire.Writer) { w.Uint64(3) }, nil, "longer than 2"},
		{"cut short", func(w *wire.Writer) {
			w.Uint64(1)
			w.String(id)
		}, nil, io.ErrUnexpectedEOF.Error()},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		w := wire.NewWriter(&buf)
		tt.send(w)
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		var scratch []byte
		got, err := ReadBuiltOutputs(wire.NewDecoder(wire.NewReader(&buf), &scratch, 1<<20), 2, 1024, 1024)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s: ReadBuiltOutputs() error = %v, want %q", tt.name, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: ReadBuiltOutputs() = %+v, %v, want %+v", tt.name, got, err, tt.want)
		}
	}
}
