// SPDX-License-Identifier: MIT

package slots

import (
	"errors"
	"strconv"
	"time"

	"github.com/offload-nix/offload/pkg/pick"
)

// ErrNewerLayout is returned by Open for a file written by a newer offload
// with a layout this one does not know. The file is left alone.
var ErrNewerLayout = errors.New("slots: file has a newer layout version")

// ErrUnknownBuilder is returned for a builder URI that has no record.
var ErrUnknownBuilder = errors.New("slots: unknown builder")

// Options configure Open.
type Options struct {
	// Logf receives warnings (a rebuilt file, the fallback location, a
	// clamped capacity). nil discards them. It must be safe for concurrent
	// use.
	Logf func(format string, args ...any)
	// Now is the clock for timestamps and health; nil means time.Now.
	Now func() time.Time
	// ReadOnly maps the file read-only, for commands that only show it.
	// It never creates or rebuilds the file; writes are ignored.
	ReadOnly bool
	// Getenv looks up XDG_STATE_HOME and HOME for OpenFallback; nil
	// means os.Getenv.
	Getenv func(string) string
}

// Phase says what a slot's build is doing, for status.
type Phase uint64

// Phases of a build.
const (
	PhaseNone Phase = iota
	PhaseConnecting
	PhaseUploading
	PhaseBuilding
	PhaseDownloading
)

var phaseNames = [...]string{"idle", "connecting", "uploading", "building", "downloading"}

func (p Phase) String() string {
	if int(p) < len(phaseNames) {
		return phaseNames[p]
	}
	return "phase(" + strconv.FormatUint(uint64(p), 10) + ")"
}

// ErrCode classifies a builder's last failure, stored in the file.
type ErrCode uint64

// Failure classes.
const (
	ErrNone     ErrCode = iota
	ErrOther            // anything not below
	ErrConnect          // TCP connect or name resolution failed
	ErrAuth             // SSH authentication failed
	ErrHostKey          // host key mismatch
	ErrTimeout          // connect or handshake timed out
	ErrProtocol         // the remote store spoke something unexpected
)

var errNames = [...]string{"none", "other", "connect", "auth", "host-key", "timeout", "protocol"}

func (e ErrCode) String() string {
	if int(e) < len(errNames) {
		return errNames[e]
	}
	return "error(" + strconv.FormatUint(uint64(e), 10) + ")"
}

// Decision is one entry of the ring of recent decisions. Drv is cut to 96
// bytes, Builder and Reason to 64.
type Decision struct {
	Time    time.Time
	Drv     string
	Answer  pick.Answer
	Builder string
	Reason  string
}

// SlotInfo describes one held slot.
type SlotInfo struct {
	Index int
	PID   int
	Since time.Time
	Phase Phase
	Drv   string // cut to 80 bytes
	Bytes int64
}

// Builder is the shared state of one builder, as Snapshot reads it.
type Builder struct {
	URI  string
	Name string
	// Known is false when the file has no record for the builder (yet).
	Known   bool
	MaxJobs int
	// Busy counts held slots; it can exceed MaxJobs for a while after the
	// machines file lowered it.
	Busy                  int
	Started               uint64
	Succeeded, Failed     uint64
	BytesSent, BytesRecvd uint64
	ConsecutiveFailures   int
	UnhealthyUntil        time.Time // zero: healthy
	LastError             ErrCode
	LastConnect           time.Duration
	LastConnectAt         time.Time
	Drained               bool
	Uploading             bool
	Running               []SlotInfo
	// Reading is the builder's last load reading (zero Time: none).
	Reading pick.Reading
	// ReadingOurs is how many of this host's slots of the builder were
	// in the building phase when the reading was stored: builds that
	// Reading.Builds already counts. Builds from elsewhere are about
	// Reading.Builds - ReadingOurs.
	ReadingOurs int
	// Refreshing is set while a process holds the refresh token.
	Refreshing bool
	// Link is what large copies measured of the link to the builder.
	Link Link

	// How the builder runs its systems (ExecOf, ExecProbed): per entry,
	// the system's hash and the entry word.
	execs [MaxSystems][2]uint64
}
