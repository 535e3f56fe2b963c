// SPDX-License-Identifier: MIT

// Package ssh connects to remote builders over SSH without an OpenSSH
// client, using golang.org/x/crypto/ssh (imported as gossh).
//
// It works in three steps, each usable on its own:
//
//   - [Resolve] computes the connection [Settings] for a machine as
//     Nix and OpenSSH together would: NIX_SSHOPTS and the machines file
//     first (like ssh's command line), then ~/.ssh/config (or the file
//     given with -F), then /etc/ssh/ssh_config. Every value records where
//     it came from, and [Settings.Explain] prints them.
//   - [Dial] connects with a bounded handshake, verifies the host key
//     (always: a pinned key from the machines file, or known_hosts files
//     with hashed entries, [host]:port, HostKeyAlias and @cert-authority
//     lines), authenticates with identity files and ssh-agent, and keeps
//     the connection alive with SSH keepalives. ProxyJump and
//     ProxyCommand are supported. Failures are [*Error] values whose
//     [Kind] says what went wrong (refused, timeout, DNS, auth, host key).
//   - [Client.Start] runs a remote command, such as the one
//     [RemoteCommand] builds for Nix's serve protocol, and gives its
//     standard streams.
//
// A machine whose host is exactly "localhost" is not reached over SSH,
// as in Nix: the command runs as a local process.
//
// Rules: verification of host keys cannot be turned off;
// StrictHostKeyChecking=no is ignored with a warning. Nothing here
// prompts: an encrypted identity file that ssh-agent does not hold is an
// error. The home directory is the user database's, never $HOME, and
// config, identity and known_hosts files that another local user could
// have changed are refused (perm.go). The package never prints; it
// reports through Options.Logf.
package ssh
