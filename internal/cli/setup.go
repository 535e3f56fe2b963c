// SPDX-License-Identifier: MIT

package cli

type setupCmd struct{}

func (setupCmd) Run(rc *runContext) error { return notYet("setup") }
