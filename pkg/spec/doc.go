// SPDX-License-Identifier: MIT

// Package spec parses Nix's builders setting and machines files exactly as
// Nix reads them, and prints them.
//
// The setting is split into lines, each line loses its "#" comment and is
// split on ";"; a piece starting with "@" includes a file, recursively
// (a missing file is empty). Every other piece is one machine of up to
// eight whitespace-separated fields: store URI, systems, SSH identity
// file, max jobs, speed factor, supported features, mandatory features and
// the base64 public host key, where "-" or absence means the default.
// [ParseBuilders] follows current Nix (src/libstore/machines.cc,
// expandBuilderLines and parseBuilderLine) and warns where Nix 2.8 reads
// the same text differently. The legacy NIX_REMOTE_SYSTEMS files have the
// same columns and parse the same way.
//
// The package is at the bottom of offload's dependency graph: it does no
// I/O beyond reading the files it is pointed at, and it opens no network
// connections. golang.org/x/crypto/ssh is used only to check that a host
// key parses.
package spec
