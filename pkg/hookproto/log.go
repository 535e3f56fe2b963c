// SPDX-License-Identifier: MIT

package hookproto

import (
	"fmt"
	"io"
	"strconv"
	"sync"

	"github.com/offload-nix/offload/internal/jsonstr"
	"github.com/offload-nix/offload/pkg/pick"
)

// Verbosity levels, as Nix numbers them (src/libutil/error.hh).
const (
	LvlError     = 0
	LvlWarn      = 1
	LvlNotice    = 2
	LvlInfo      = 3
	LvlTalkative = 4
	LvlChatty    = 5
	LvlDebug     = 6
	LvlVomit     = 7
)

// Activity and result types used in @nix lines (ActivityType and ResultType
// in Nix's src/libutil/logging.hh).
const (
	ActUnknown   = 0
	ActCopyPath  = 100
	ActCopyPaths = 103

	ResProgress = 105
)

// Logger writes the hook's standard error: answers, and @nix JSON lines.
// It is safe for concurrent use; each line goes out in one write.
type Logger struct {
	mu        sync.Mutex
	w         io.Writer
	verbosity int
	buf       []byte
	nextID    uint64
	err       error
}

// NewLogger writes to w (the hook's standard error) and drops messages above
// verbosity, the number Nix passes as the hook's last argument.
func NewLogger(w io.Writer, verbosity int) *Logger {
	return &Logger{w: w, verbosity: verbosity, nextID: 1}
}

// Verbosity is the level Nix asked for.
func (l *Logger) Verbosity() int { return l.verbosity }

// Err returns the first write error (Nix closed the pipe).
func (l *Logger) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

func (l *Logger) flush() {
	if l.err == nil {
		_, l.err = l.w.Write(l.buf)
	}
	l.buf = l.buf[:0]
}

// Answer writes a decline, postpone or decline-permanently answer.
func (l *Logger) Answer(a pick.Answer) error {
	switch a {
	case pick.Decline, pick.Postpone, pick.DeclinePermanently:
	case pick.Accept:
		return fmt.Errorf("hookproto: accept needs a machine: use Accept")
	default:
		return fmt.Errorf("hookproto: no answer %v", a)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, "# "...)
	l.buf = append(l.buf, a.String()...)
	l.buf = append(l.buf, '\n')
	l.flush()
	return l.err
}

// Accept writes "# accept" and the machine's name as one write: Nix reads
// the line after "# accept" raw, as the machine it shows to the user.
func (l *Logger) Accept(machine string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, "# accept\n"...)
	for i := 0; i < len(machine); i++ {
		if c := machine[i]; c != '\n' && c != '\r' {
			l.buf = append(l.buf, c)
		}
	}
	l.buf = append(l.buf, '\n')
	l.flush()
	return l.err
}

// Msg writes a message Nix shows to the user at level, when level is within
// the verbosity Nix asked for. The text starts with "offload: ".
func (l *Logger) Msg(level int, format string, args ...any) {
	if level > l.verbosity {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, `@nix {"action":"msg","level":`...)
	l.buf = strconv.AppendInt(l.buf, int64(level), 10)
	l.buf = append(l.buf, `,"msg":`...)
	l.buf = jsonstr.Append(l.buf, "offload: "+fmt.Sprintf(format, args...))
	l.buf = append(l.buf, "}\n"...)
	l.flush()
}

// Errorf, Warnf, Infof and Debugf are Msg at those levels.
func (l *Logger) Errorf(format string, args ...any) { l.Msg(LvlError, format, args...) }
func (l *Logger) Warnf(format string, args ...any)  { l.Msg(LvlWarn, format, args...) }
func (l *Logger) Infof(format string, args ...any)  { l.Msg(LvlInfo, format, args...) }
func (l *Logger) Debugf(format string, args ...any) { l.Msg(LvlDebug, format, args...) }

// Start begins an activity that Nix shows (e.g. "copying 3 paths to …") and
// returns its id. Fields may be strings or non-negative integers only:
// anything else fails the build in Nix (src/libutil/logging.cc, getFields:
// "unsupported JSON type").
func (l *Logger) Start(level, typ int, text string, fields ...any) uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	id := l.nextID
	l.nextID++
	l.buf = append(l.buf, `@nix {"action":"start","id":`...)
	l.buf = strconv.AppendUint(l.buf, id, 10)
	l.buf = append(l.buf, `,"level":`...)
	l.buf = strconv.AppendInt(l.buf, int64(level), 10)
	l.buf = append(l.buf, `,"type":`...)
	l.buf = strconv.AppendInt(l.buf, int64(typ), 10)
	l.buf = append(l.buf, `,"text":`...)
	l.buf = jsonstr.Append(l.buf, text)
	l.buf = appendFields(l.buf, fields)
	l.buf = append(l.buf, "}\n"...)
	l.flush()
	return id
}

// Result reports progress on an activity, e.g. ResProgress with done,
// expected, running and failed.
func (l *Logger) Result(id uint64, typ int, fields ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, `@nix {"action":"result","id":`...)
	l.buf = strconv.AppendUint(l.buf, id, 10)
	l.buf = append(l.buf, `,"type":`...)
	l.buf = strconv.AppendInt(l.buf, int64(typ), 10)
	l.buf = appendFields(l.buf, fields)
	l.buf = append(l.buf, "}\n"...)
	l.flush()
}

// Stop ends an activity.
func (l *Logger) Stop(id uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, `@nix {"action":"stop","id":`...)
	l.buf = strconv.AppendUint(l.buf, id, 10)
	l.buf = append(l.buf, "}\n"...)
	l.flush()
}

func appendFields(b []byte, fields []any) []byte {
	b = append(b, `,"fields":[`...)
	for i, f := range fields {
		if i > 0 {
			b = append(b, ',')
		}
		switch v := f.(type) {
		case string:
			b = jsonstr.Append(b, v)
		case int:
			b = strconv.AppendUint(b, uint64(max(v, 0)), 10)
		case int64:
			b = strconv.AppendUint(b, uint64(max(v, 0)), 10)
		case uint64:
			b = strconv.AppendUint(b, v, 10)
		default:
			b = jsonstr.Append(b, fmt.Sprint(v))
		}
	}
	return append(b, ']')
}
