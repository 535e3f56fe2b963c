// SPDX-License-Identifier: MIT

package cli

type pickCmd struct{}

func (pickCmd) Run(rc *runContext) error { return notYet("pick") }
