// SPDX-License-Identifier: MIT

// Package builder is the one way offload reaches a builder: it dials it
// (through pkg/ssh, or through the connection relay of pkg/mux), starts the
// store protocol there (Nix's serve protocol for ssh://, pkg/serve; the
// daemon protocol for ssh-ng://, pkg/daemon) within the connect timeout,
// keeps the tail of the builder's stderr for error messages, runs the
// fixed probes that ask the builder's Nix for its version, configuration,
// real load and whether it trusts the SSH user, and copies NARs compressed
// in sessions beside the store protocol ([Conn.Squashed]).
//
// The hook (internal/hook), `offload check` and `offload setup`
// (internal/cli) all connect with [Dial], so a builder that check finds
// fine is one the hook can use, and both classify a failure alike
// ([ErrCode]).
//
// # Layout
//
// Arrows point from importer to imported; nothing points back up. The
// module's deps_test.go checks them.
//
//	cmd/offload → internal/cli
//	internal/cli → internal/hook (hook mode), internal/builder (check, setup), internal/decide (pick, machines, the slot file)
//	internal/hook → internal/builder, internal/decide
//	internal/builder → pkg/ssh, pkg/mux, pkg/serve, pkg/daemon, pkg/squash, pkg/wire, pkg/store, pkg/drv, pkg/pick, pkg/remoteload, pkg/slots, pkg/spec
//	internal/decide → pkg/pick, pkg/slots, pkg/config, pkg/drv, pkg/spec
//
// Settings reach the hook as pkg/config loads them (*config.Config), and
// each is read where it is used: a new setting is an entry in pkg/config's
// registry and its use.
//
// internal/cli imports none of pkg/serve, pkg/daemon, pkg/localstore and
// pkg/wire: what it needs of a builder's protocols is here, and what it
// needs of a decision is in internal/decide. The protocol packages never
// import internal/*, and internal/builder never imports the hook.
//
// Rules: every step that waits on the builder (the dial, the handshake, a
// probe) is bounded by the connect timeout, since Nix waits for the hook's
// answer with its whole scheduler; nothing from the configuration is put
// into a remote shell line (the commands are pkg/ssh's RemoteCommand and
// the fixed probes); and a [Conn] owns its session and connection, which
// Close releases on every path.
package builder
