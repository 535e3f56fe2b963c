// SPDX-License-Identifier: MIT

package store

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestPeerCopyNAR(t *testing.T) {
	nar := []byte("0123456789")
	tests := []struct {
		name    string
		host    string
		w       io.Writer
		size    uint64
		wantErr string // "" for success
		eof     bool   // the error wraps io.ErrUnexpectedEOF
	}{
		{name: "whole", w: &bytes.Buffer{}, size: 10},
		{name: "part", w: &bytes.Buffer{}, size: 4},
		{name: "short", host: "b", w: &bytes.Buffer{}, size: 20,
			wantErr: "serve: b: DumpStorePath /nix/store/p: remote closed the connection (NAR ended after 10 of 20 bytes: unexpected EOF); remote stderr: error: gone", eof: true},
		{name: "writer fails", w: failWriter{}, size: 10,
			wantErr: "serve: DumpStorePath /nix/store/p: writing NAR: disk full"},
	}
	for _, tt := range tests {
		p := &Peer{Proto: "serve", Host: tt.host, Stderr: func() string { return "error: gone\n" }}
		var calls int
		var done uint64
		err := p.CopyNAR("DumpStorePath", "/nix/store/p", tt.w, bytes.NewReader(nar), tt.size, make([]byte, 3), func(path string, d, size uint64) {
			if path != "/nix/store/p" || size != tt.size || d <= done {
				t.Errorf("%s: progress(%s, %d, %d) after %d", tt.name, path, d, size, done)
			}
			calls, done = calls+1, d
		})
		if tt.wantErr == "" {
			if err != nil || !bytes.Equal(tt.w.(*bytes.Buffer).Bytes(), nar[:tt.size]) || done != tt.size {
				t.Errorf("%s: CopyNAR = %v, copied %q, progress %d; want %q", tt.name, err, tt.w.(*bytes.Buffer).Bytes(), done, nar[:tt.size])
			}
			continue
		}
		if err == nil || err.Error() != tt.wantErr || errors.Is(err, io.ErrUnexpectedEOF) != tt.eof {
			t.Errorf("%s: CopyNAR = %v, want %q (unexpected EOF %v)", tt.name, err, tt.wantErr, tt.eof)
		}
	}
}

func TestPeerCheckNARSize(t *testing.T) {
	p := &Peer{Proto: "daemon", Host: "b"}
	if err := p.CheckNARSize("NarFromPath", "/nix/store/p", 1); err != nil {
		t.Errorf("CheckNARSize(1) = %v", err)
	}
	err := p.CheckNARSize("NarFromPath", "/nix/store/p", 0)
	if err == nil || !IsLocal(err) || err.Error() != "daemon: b: NarFromPath /nix/store/p: narSize is 0" {
		t.Errorf("CheckNARSize(0) = %v, want a local error naming the host, op and path", err)
	}
	if p := (&Peer{Proto: "serve"}); !strings.HasPrefix(p.Prefix(), "serve: ") || p.On() != "" {
		t.Errorf("Prefix() = %q, On() = %q without a host", p.Prefix(), p.On())
	}
}
