// SPDX-License-Identifier: MIT

package serve_test

import (
	"crypto/sha256"
	"fmt"
	"log"
	"os/exec"

	"github.com/offload-nix/offload/pkg/serve"
)

// Reading the local store through a read-only `nix-store --serve`: query a
// path and check its NAR against the recorded hash.
func Example() {
	cmd := exec.Command("nix-store", "--serve")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		log.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		log.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	defer cmd.Wait()
	defer stdin.Close() // nix-store exits at EOF

	c, err := serve.New(stdout, stdin, serve.Options{Host: "local"})
	if err != nil {
		log.Fatal(err)
	}
	infos, err := c.QueryPathInfos([]string{"/nix/store/2jmiqxxd2z4ypk8am71rc6kffqzgma57-t"})
	if err != nil {
		log.Fatal(err)
	}
	for _, info := range infos {
		h := sha256.New()
		if err := c.DumpStorePath(info.Path, h, info.NarSize); err != nil {
			log.Fatal(err)
		}
		want, err := info.NarDigest()
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(info.Path, string(h.Sum(nil)) == string(want[:]))
	}
}
