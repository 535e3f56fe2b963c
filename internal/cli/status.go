// SPDX-License-Identifier: MIT

package cli

type statusCmd struct{}

func (statusCmd) Run(rc *runContext) error { return notYet("status") }
