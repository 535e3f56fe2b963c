// SPDX-License-Identifier: MIT

// Package hookproto speaks Nix's build-hook protocol: it reads the settings
// block and the "try" requests Nix writes on the hook's standard input, and
// writes the hook's answers and log messages on its standard error.
//
// The layouts are Nix's (settings: HookInstance::HookInstance in
// src/libstore/build/hook-instance.cc, 2.8, and
// src/libstore/unix/build/hook-instance.cc, current; requests and answers:
// Nix 2.8 src/libstore/build/derivation-goal.cc
// DerivationGoal::tryBuildHook; current
// src/libstore/build/derivation-building-goal.cc
// DerivationBuildingGoal::tryBuildHook), described in docs/internals.md.
//
// Rules for standard error: Nix reads it line by line and treats a line that
// starts with "# " as the answer to its request, so every line the hook
// writes goes through one Logger, which writes answers only when asked to
// and turns everything else into "@nix {json}" lines. Plain lines would be
// lost anyway: under nix-daemon they reach the daemon's journal, not the
// user, and after "# accept" Nix drops them.
package hookproto

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"

	"github.com/offload-nix/offload/pkg/wire"
)

// Limits on what Nix may send. Nix 2.8 sends about 90 settings; store
// paths are at most a few hundred bytes.
const (
	maxSettings   = 4096
	maxSettingLen = 1 << 20
	maxPathLen    = 4096
	maxPaths      = 1 << 20
	maxFeatures   = 1024
)

// ReadSettings reads the settings block that starts the hook's input:
// entries (u64 1, str name, str value) ended by u64 0.
func ReadSettings(r *wire.Reader) (map[string]string, error) {
	settings := make(map[string]string, 128)
	for {
		more, err := r.Uint64()
		if err != nil {
			return nil, fmt.Errorf("hookproto: reading settings: %w", unexpected(err))
		}
		switch more {
		case 0:
			return settings, nil
		case 1:
		default:
			return nil, fmt.Errorf("hookproto: reading settings: bad entry marker %d", more)
		}
		if len(settings) >= maxSettings {
			return nil, fmt.Errorf("hookproto: reading settings: more than %d settings", maxSettings)
		}
		name, err := r.BytesMax(nil, maxSettingLen)
		if err != nil {
			return nil, fmt.Errorf("hookproto: reading settings: %w", unexpected(err))
		}
		value, err := r.BytesMax(nil, maxSettingLen)
		if err != nil {
			return nil, fmt.Errorf("hookproto: reading setting %q: %w", name, unexpected(err))
		}
		settings[string(name)] = string(value)
	}
}

// Request is one "try" request: can the hook build this derivation?
type Request struct {
	// AmWilling is true when Nix could build it locally (a local build
	// slot is free).
	AmWilling bool
	// System is the derivation's platform, e.g. "aarch64-linux", or
	// "builtin".
	System string
	// DrvPath is the store path of the derivation.
	DrvPath string
	// Features are the required system features, sorted.
	Features []string

	scratch []byte
}

// ErrNotTry is returned when the hook's input holds something other than a
// "try" request. Nix's own hook ends quietly then; so should the caller.
var ErrNotTry = errors.New("hookproto: expected a try request")

// ReadRequest reads the next request into req, reusing its storage. It
// returns io.EOF when Nix closed the input between requests.
func ReadRequest(r *wire.Reader, req *Request) error {
	n, err := r.Uint64()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return io.EOF
		}
		return fmt.Errorf("hookproto: reading request: %w", err)
	}
	if n != 3 {
		return ErrNotTry
	}
	var word [8]byte
	if _, err := io.ReadFull(r.Underlying(), word[:]); err != nil {
		return fmt.Errorf("hookproto: reading request: %w", unexpected(err))
	}
	if string(word[:3]) != "try" || word[3]|word[4]|word[5]|word[6]|word[7] != 0 {
		return ErrNotTry
	}
	if req.AmWilling, err = r.Bool(); err != nil {
		return fmt.Errorf("hookproto: reading request: %w", unexpected(err))
	}
	buf := req.scratch
	defer func() { req.scratch = buf }()
	if buf, err = r.BytesMax(buf[:0], maxPathLen); err != nil {
		return fmt.Errorf("hookproto: reading request system: %w", unexpected(err))
	}
	if req.System != string(buf) { // keep the old string: no allocation for the same system
		req.System = string(buf)
	}
	if buf, err = r.BytesMax(buf[:0], maxPathLen); err != nil {
		return fmt.Errorf("hookproto: reading request derivation: %w", unexpected(err))
	}
	req.DrvPath = string(buf)
	nf, err := r.Uint64()
	if err != nil {
		return fmt.Errorf("hookproto: reading request features: %w", unexpected(err))
	}
	if nf > maxFeatures {
		return fmt.Errorf("hookproto: reading request: %d features is more than %d", nf, maxFeatures)
	}
	req.Features = req.Features[:0]
	for i := uint64(0); i < nf; i++ {
		if buf, err = r.BytesMax(buf[:0], maxPathLen); err != nil {
			return fmt.Errorf("hookproto: reading request features: %w", unexpected(err))
		}
		if i < uint64(len(req.Features[:cap(req.Features)])) && req.Features[:i+1][i] == string(buf) {
			req.Features = req.Features[:i+1]
		} else {
			req.Features = append(req.Features, string(buf))
		}
	}
	return nil
}

// ReadAccepted reads what Nix sends after "# accept": the input paths (the
// closure the build needs) and the names of the outputs it wants. Nix then
// closes the hook's input.
func ReadAccepted(r *wire.Reader) (inputs, wanted []string, err error) {
	inputs, err = readList(r, maxPaths, maxPathLen)
	if err != nil {
		return nil, nil, fmt.Errorf("hookproto: reading input paths: %w", unexpected(err))
	}
	wanted, err = readList(r, maxPaths, maxPathLen)
	if err != nil {
		return nil, nil, fmt.Errorf("hookproto: reading wanted outputs: %w", unexpected(err))
	}
	return inputs, wanted, nil
}

func readList(r *wire.Reader, maxN, maxLen uint64) ([]string, error) {
	n, err := r.Uint64()
	if err != nil {
		return nil, err
	}
	if n > maxN {
		return nil, fmt.Errorf("list of %d entries is longer than %d", n, maxN)
	}
	out := make([]string, 0, min(n, 4096))
	var buf []byte
	for i := uint64(0); i < n; i++ {
		if buf, err = r.BytesMax(buf[:0], maxLen); err != nil {
			return nil, err
		}
		out = append(out, string(buf))
	}
	return out, nil
}

// unexpected turns an EOF inside a message into io.ErrUnexpectedEOF.
func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// WriteSettings and WriteRequest encode what Nix sends, for tests and for
// tools that drive a hook. WriteSettings sends the settings named in order,
// in that order, or all of them sorted by name if order is nil.
func WriteSettings(w *wire.Writer, settings map[string]string, order []string) error {
	if order == nil {
		order = slices.Sorted(maps.Keys(settings))
	}
	for _, k := range order {
		w.Uint64(1)
		w.String(k)
		w.String(settings[k])
	}
	return w.Uint64(0)
}

// WriteRequest encodes one "try" request.
func WriteRequest(w *wire.Writer, req *Request) error {
	w.String("try")
	w.Bool(req.AmWilling)
	w.String(req.System)
	w.String(req.DrvPath)
	return w.Strings(req.Features)
}
