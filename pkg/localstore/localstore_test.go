// SPDX-License-Identifier: MIT

package localstore

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/offload-nix/offload/internal/testenv"
	"github.com/offload-nix/offload/pkg/store"
)

func TestNew(t *testing.T) {
	t.Setenv("NIX_STORE_DIR", "")
	tests := []struct {
		setting                string
		storeDir, realDir, uri string
		unsupported            bool
	}{
		{"", "/nix/store", "/nix/store", "local", false},
		{"auto", "/nix/store", "/nix/store", "local", false},
		{"local", "/nix/store", "/nix/store", "local", false},
		{"daemon", "/nix/store", "/nix/store", "local", false},
		{"unix:///nix/var/nix/daemon-socket/socket", "/nix/store", "/nix/store", "local", false},
		{"local?root=/x", "/nix/store", "/x/nix/store", "local?root=%2Fx", false},
		{"/x", "/nix/store", "/x/nix/store", "local?root=%2Fx", false},
		{"local?store=/gnu/store&real=/data/store", "/gnu/store", "/data/store", "local?real=%2Fdata%2Fstore&store=%2Fgnu%2Fstore", false},
		{"ssh://builder", "", "", "", true},
		{"ssh-ng://builder", "", "", "", true},
		{"https://cache.nixos.org", "", "", "", true},
		{"file:///tmp/cache", "", "", "", true},
		{"dummy", "", "", "", true},
	}
	for _, tt := range tests {
		s, err := New(tt.setting, []string{"nix-store"}, nil)
		if tt.unsupported {
			if !errors.Is(err, ErrUnsupported) {
				t.Errorf("New(%q) = %v, want ErrUnsupported", tt.setting, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("New(%q): %v", tt.setting, err)
			continue
		}
		if s.StoreDir != tt.storeDir || s.RealDir != tt.realDir || s.URI != tt.uri {
			t.Errorf("New(%q) = {%s %s %s}, want {%s %s %s}", tt.setting, s.StoreDir, s.RealDir, s.URI, tt.storeDir, tt.realDir, tt.uri)
		}
	}
	for _, bad := range []string{"local?root=relative", "/x?root=/y", "local?root=%zz"} {
		if _, err := New(bad, nil, nil); err == nil {
			t.Errorf("New(%q) succeeded", bad)
		}
	}
}

func TestSortInfos(t *testing.T) {
	s := &Store{StoreDir: "/nix/store"}
	p := func(c byte, name string) string {
		return "/nix/store/" + strings.Repeat(string(c), 32) + "-" + name
	}
	a, b, c, ext := p('a', "a"), p('b', "b"), p('c', "c"), p('d', "ext")
	h := store.FormatSHA256([32]byte{})
	infos := []store.PathInfo{
		{Path: a, References: []string{a, b, ext}, NarSize: 1, NarHash: h},
		{Path: b, References: []string{c}, NarSize: 1, NarHash: h},
		{Path: c, NarSize: 1, NarHash: h},
	}
	order, err := s.sortInfos(infos)
	if err != nil {
		t.Fatal(err)
	}
	want := []int{2, 1, 0}
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("sortInfos order = %v, want %v", order, want)
		}
	}
	infos[2].References = []string{a}
	if _, err := s.sortInfos(infos); err == nil || !strings.Contains(err.Error(), "cycle") {
		t.Errorf("sortInfos(cycle) = %v, want a cycle error", err)
	}
	dup := []store.PathInfo{{Path: a, NarSize: 1, NarHash: h}, {Path: a, NarSize: 1, NarHash: h}}
	if _, err := s.sortInfos(dup); err == nil {
		t.Error("sortInfos(duplicate) succeeded")
	}
	outside := []store.PathInfo{{Path: "/etc/passwd", NarSize: 1, NarHash: h}}
	if _, err := s.sortInfos(outside); err == nil {
		t.Error("sortInfos(/etc/passwd) succeeded")
	}
	badHash := []store.PathInfo{{Path: a, NarSize: 1, NarHash: "md5:00"}}
	if _, err := s.sortInfos(badHash); err == nil || !strings.Contains(err.Error(), "narHash") {
		t.Errorf("sortInfos(md5 hash) = %v, want a narHash error", err)
	}
}

func TestVersionAtLeast(t *testing.T) {
	tests := []struct {
		v  string
		ok bool
	}{
		{"2.36.0", true},
		{"2.36.0pre20260822_88b09c6", true},
		{"2.37", true},
		{"3.0.0", true},
		{"2.35.9", false},
		{"2.8.0", false},
		{"lix-2.91.1", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := versionAtLeast(tt.v, 2, 36); got != tt.ok {
			t.Errorf("versionAtLeast(%q, 2.36) = %v, want %v", tt.v, got, tt.ok)
		}
	}
}

func TestFindNixStore(t *testing.T) {
	path, err := exec.LookPath("nix-store")
	if err != nil {
		testenv.Skip(t, "no nix-store on PATH")
	}
	ctx := context.Background()
	// A process whose executable is the nix multi-call binary, as the
	// hook's parent is.
	parent := exec.Command(path, "--serve")
	stdin, err := parent.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		parent.Wait()
	}()
	real, err := os.Readlink("/proc/" + strconv.Itoa(parent.Process.Pid) + "/exe")
	if err != nil {
		t.Fatal(err)
	}
	got, err := FindNixStore(ctx, parent.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != real {
		t.Errorf("FindNixStore(nix parent) = %v, want [%s]", got, real)
	}
	if v, err := Version(ctx, got); err != nil || v == "" {
		t.Errorf("Version(%v) = %q, %v", got, v, err)
	}
	// This test binary is no nix: fall back to PATH.
	got, err = FindNixStore(ctx, os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != path {
		t.Errorf("FindNixStore(non-nix parent) = %v, want [%s]", got, path)
	}
	// Candidates runs nothing: the parent first when it is a Nix
	// binary, never a parent of another name.
	if c := Candidates(parent.Process.Pid); len(c) == 0 || c[0][0] != real {
		t.Errorf("Candidates(nix parent) = %v, want %s first", c, real)
	}
	self, _ := os.Executable()
	for _, c := range Candidates(os.Getpid()) {
		if c[0] == self {
			t.Errorf("Candidates(non-nix parent) = %v, includes the parent", c)
		}
	}
	if _, err := Version(ctx, []string{"/bin/true"}); err == nil {
		t.Error("Version(/bin/true) succeeded")
	}
}
