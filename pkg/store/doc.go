// SPDX-License-Identifier: MIT

// Package store holds the vocabulary that Nix's store protocols share: the
// information about a store path ([PathInfo]), the request and the result
// of a remote build ([BuildOptions], [BuildResult]), store path and hash
// parsing, the diagnosis of a remote shell that printed to stdout, and
// what the two protocols' clients do alike: the [Hello] that opens a
// stream, the [Peer] that names its other end in errors and copies the
// NARs it sends, the [Guard] that keeps the stream in step and runs one
// operation at a time ([Run]), the checks before an upload
// ([UploadHashes], [NAREnd]) and the built outputs of a result
// ([ReadBuiltOutputs]).
//
// The serve protocol (package serve), the worker protocol (package daemon)
// and the local store (package localstore) all speak in these types, so the
// hook handles every kind of builder, and its own store, alike. The package
// opens nothing: it reads and writes only streams it is given.
package store
