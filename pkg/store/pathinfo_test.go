// SPDX-License-Identifier: MIT

package store

import (
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
)

func TestUploadHashes(t *testing.T) {
	good := PathInfo{Path: "/nix/store/a", NarSize: 1, NarHash: "sha256:" + hexEmpty}
	tests := []struct {
		name  string
		infos []PathInfo
		err   string
	}{
		{"none", nil, ""},
		{"good", []PathInfo{good, good}, ""},
		{"bad hash", []PathInfo{good, {Path: "/nix/store/b", NarSize: 1, NarHash: "sha256:abc"}}, "/nix/store/b: narHash: "},
		{"empty", []PathInfo{{Path: "/nix/store/c", NarHash: good.NarHash}}, "/nix/store/c: narSize is 0"},
	}
	for _, tt := range tests {
		got, err := UploadHashes(tt.infos)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: UploadHashes() error = %v, want %q", tt.name, err, tt.err)
			}
			continue
		}
		if err != nil || len(got) != len(tt.infos) || slices.ContainsFunc(got, func(h string) bool { return h != hexEmpty }) {
			t.Errorf("%s: UploadHashes() = %q, %v, want %d times %s", tt.name, got, err, len(tt.infos), hexEmpty)
		}
	}
}

func TestNAREnd(t *testing.T) {
	tests := []struct {
		name string
		r    io.Reader
		err  string
	}{
		{"at its end", strings.NewReader(""), ""},
		{"longer", strings.NewReader("x"), "NAR is longer than its narSize 5"},
		{"failing", iotest.ErrReader(errors.New("disk on fire")), "reading NAR: disk on fire"},
	}
	for _, tt := range tests {
		err := NAREnd(tt.r, 5)
		if (tt.err == "") != (err == nil) || err != nil && err.Error() != tt.err {
			t.Errorf("%s: NAREnd() = %v, want %q", tt.name, err, tt.err)
		}
	}
}
