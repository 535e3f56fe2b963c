// SPDX-License-Identifier: MIT

package slots

import (
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/offload-nix/offload/pkg/spec"
)

// A slot whose owner's pid now belongs to another, live process (the pid
// was reused) is reclaimed: the start time in the owner word differs. A
// slot of that same live process, with its real start time, is kept.
func TestReclaimReusedPID(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Skip(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	pid := cmd.Process.Pid
	start, _, ok := procStat(pid)
	if !ok {
		t.Skip("no /proc stat for a child")
	}
	path := filepath.Join(t.TempDir(), "slots")
	f := open(t, path, []spec.Machine{mach("ssh://a", 2)})
	v := f.cur.Load()
	m, rec := v.m, v.recs[0]
	live := ownerWord(pid, start)
	reused := ownerWord(pid, start+1) // an earlier process with this pid
	m.store(m.g.slotOff(rec, 0), reused)
	m.store(m.g.slotOff(rec, 1), live)
	if !alive(live) {
		t.Fatalf("alive(%#x) = false for running pid %d", live, pid)
	}
	if alive(reused) {
		t.Errorf("alive(%#x) = true: pid %d with another start time taken for its old owner", reused, pid)
	}
	if n := f.Reclaim(); n != 1 {
		t.Errorf("Reclaim() = %d, want 1 (the reused pid's slot)", n)
	}
	if got := m.load(m.g.slotOff(rec, 0)); got != 0 {
		t.Errorf("slot of the reused pid still owned by %#x", got)
	}
	if got := m.load(m.g.slotOff(rec, 1)); got != live {
		t.Errorf("slot of the live owner = %#x, want %#x", got, live)
	}
}
