// SPDX-License-Identifier: MIT

package cli

type checkCmd struct{}

func (checkCmd) Run(rc *runContext) error { return notYet("check") }
