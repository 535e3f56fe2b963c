// SPDX-License-Identifier: MIT

package hook

import (
	"os"
	"testing"

	"github.com/offload-nix/offload/pkg/config"
)

// testConfig is offload's settings at their defaults but for kv (pairs of
// name and value), read as the hook's caller reads them.
func testConfig(t testing.TB, kv ...string) *config.Config {
	t.Helper()
	// No relay unless a test asks for one: root's is the machine's own
	// (/run/offload/relay), and a test binary's hook would make a running
	// one stop as stale.
	env := map[string]string{"OFFLOAD_CONF": os.DevNull, config.EnvName("connect-persist"): "0"}
	for i := 0; i+1 < len(kv); i += 2 {
		env[config.EnvName(kv[i])] = kv[i+1]
	}
	c, err := config.Load(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	return c
}
