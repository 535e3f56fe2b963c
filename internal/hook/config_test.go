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
	env := map[string]string{"OFFLOAD_CONF": os.DevNull}
	for i := 0; i+1 < len(kv); i += 2 {
		env[config.EnvName(kv[i])] = kv[i+1]
	}
	c, err := config.Load(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	return c
}
