// SPDX-License-Identifier: MIT

package spec

// Machine is one builder, as one line of a machines file or of the
// builders setting describes it.
//
// Identity: a machine is known by URI (normalised as Nix normalises it:
// "ssh://" added to a bare "[user@]host", query parameters removed) and by
// Name (the host part alone, e.g. "b1"). pkg/slots keys its records by URI.
type Machine struct {
	// URI is the normalised store URI without query parameters,
	// e.g. "ssh://root@b1" or "ssh-ng://b2:2222".
	URI string
	// Scheme is "ssh" or "ssh-ng" for remote builders, or "" for a local
	// store URI (a path, "local?root=…", "auto", "daemon").
	Scheme string
	// User, Host and Port come from the URI authority. Port is 0 when
	// the URI names none.
	User string
	Host string
	Port int
	// Name is the short name: Host, e.g. "b1".
	Name string
	// Params holds the URI's query parameters (ssh-key, remote-program,
	// remote-store, base64-ssh-public-host-key, compress, …).
	Params map[string]string
	// Systems the machine builds for, sorted, without duplicates.
	// Machines from one parse may share the backing arrays of Systems and
	// the feature lists: treat them as read-only.
	Systems []string
	// SSHKey is the identity file from field 3 (or ?ssh-key=), "" if none.
	SSHKey string
	// MaxJobs is the number of builds it runs at once (default 1).
	MaxJobs int
	// SpeedFactor ranks machines (default 1; 0 means 1).
	SpeedFactor float64
	// SupportedFeatures and MandatoryFeatures, sorted, without duplicates.
	SupportedFeatures []string
	MandatoryFeatures []string
	// PublicHostKey is the base64 text of field 8 (or
	// ?base64-ssh-public-host-key=), "" if none.
	PublicHostKey string
	// Source says where the machine was defined: "file:line", or
	// "builders:N" for the N-th line of an inline setting.
	Source string
}
