// SPDX-License-Identifier: MIT

// Package store holds the vocabulary that Nix's store protocols share: the
// information about a store path ([PathInfo]), the request and the result
// of a remote build ([BuildOptions], [BuildResult]), store path and hash
// parsing, the diagnosis of a remote shell that printed to stdout, and the
// [Guard] that keeps a client's stream in step.
//
// The serve protocol (package serve), the worker protocol (package daemon)
// and the local store (package localstore) all speak in these types, so the
// hook handles every kind of builder, and its own store, alike. The package
// does no I/O.
package store
