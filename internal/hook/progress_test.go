// SPDX-License-Identifier: MIT

package hook

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"

	"github.com/offload-nix/offload/pkg/hookproto"
)

// A copy is one actCopyPath activity whose last progress result says every
// byte arrived, then its stop: what `nix build` needs to draw it.
func TestCopyProgress(t *testing.T) {
	var out bytes.Buffer
	h := &hook{log: hookproto.NewLogger(&out, hookproto.LvlTalkative)}
	data := bytes.Repeat([]byte("x"), 300<<10)
	p := h.startCopy(bytes.NewReader(data), "/nix/store/aaaa-x", "ssh://b1", "local", uint64(len(data)), &reservation{})
	n, err := io.Copy(io.Discard, struct{ io.Reader }{p})
	if err != nil || n != int64(len(data)) {
		t.Fatalf("copied %d, %v", n, err)
	}
	p.finish()
	p.finish() // idempotent

	var events []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var v map[string]any
		if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "@nix ")), &v); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		events = append(events, v)
	}
	if len(events) < 3 {
		t.Fatalf("events = %v", events)
	}
	start, last, stop := events[0], events[len(events)-2], events[len(events)-1]
	if start["action"] != "start" || start["type"].(float64) != hookproto.ActCopyPath || !strings.Contains(start["text"].(string), "from 'ssh://b1'") {
		t.Errorf("start = %v", start)
	}
	f, _ := last["fields"].([]any)
	if last["action"] != "result" || len(f) != 4 || f[0].(float64) != float64(len(data)) || f[1].(float64) != float64(len(data)) {
		t.Errorf("last result = %v, want done = expected = %d", last, len(data))
	}
	if stop["action"] != "stop" || stop["id"] != start["id"] {
		t.Errorf("stop = %v", stop)
	}
}
