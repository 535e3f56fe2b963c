// SPDX-License-Identifier: MIT

package ssh

// Rules for this file: github.com/kevinburke/ssh_config (v1.6) parses
// "Match all" and "Match host …" only, and fails the whole file on any
// other criterion (exec, user, final, …). So each Match line is
// evaluated here and replaced, before parsing, by "Host *" when it
// matches or "Host !*" when it does not. Criteria that cannot be
// evaluated without running commands or knowing the network (exec,
// canonical, final, localnetwork, address, …) are treated as not
// matching and reported in Settings.Notes, which Explain prints.

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// rewriteMatch rewrites the Match lines of an ssh_config file.
// host is the original host name (lowercase), ruser the remote user as
// known from the command line (or the local user), luser the local user.
func rewriteMatch(data []byte, path, host, ruser, luser string) ([]byte, []string) {
	if !bytes.Contains(bytes.ToLower(data), []byte("match")) {
		return data, nil
	}
	var notes []string
	lines := bytes.Split(data, []byte("\n"))
	for i, ln := range lines {
		t := strings.TrimSpace(string(ln))
		kw, rest := splitKeyword(t)
		if !strings.EqualFold(kw, "match") {
			continue
		}
		ok, why := evalMatch(rest, host, ruser, luser)
		if why != "" {
			notes = append(notes, fmt.Sprintf("%s:%d: Match %s not evaluated (%s); its settings are not applied", path, i+1, rest, why))
		}
		if ok {
			lines[i] = []byte("Host *")
		} else {
			lines[i] = []byte("Host !*")
		}
	}
	return bytes.Join(lines, []byte("\n")), notes
}

// splitKeyword splits "Keyword value", "Keyword=value" or
// "Keyword = value".
func splitKeyword(t string) (kw, rest string) {
	i := strings.IndexAny(t, " \t=")
	if i < 0 {
		return t, ""
	}
	kw, rest = t[:i], strings.TrimLeft(t[i:], " \t")
	rest = strings.TrimLeft(strings.TrimPrefix(rest, "="), " \t")
	if j := strings.Index(rest, " #"); j >= 0 {
		rest = strings.TrimSpace(rest[:j])
	}
	return kw, rest
}

// evalMatch evaluates the criteria of one Match line, all of which must
// hold (ssh_config(5) "Match"). why is non-empty when a criterion could
// not be evaluated; the line then does not match.
func evalMatch(crit, host, ruser, luser string) (ok bool, why string) {
	f := strings.Fields(crit)
	if len(f) == 0 {
		return false, "no criteria"
	}
	ok = true
	for i := 0; i < len(f); i++ {
		c := strings.ToLower(f[i])
		neg := strings.HasPrefix(c, "!")
		c = strings.TrimPrefix(c, "!")
		var r bool
		switch c {
		case "all":
			r = true
		case "host", "originalhost", "user", "localuser":
			if i+1 == len(f) {
				return false, "criterion " + c + " has no pattern"
			}
			i++
			subject := host
			switch c {
			case "user":
				subject = ruser
			case "localuser":
				subject = luser
			}
			r = matchList(subject, f[i])
		case "exec", "canonical", "final", "localnetwork", "address", "localaddress", "localport", "rdomain", "tagged", "version", "sessiontype", "command":
			return false, "offload does not evaluate " + c
		default:
			return false, "unknown criterion " + c
		}
		if r == neg {
			ok = false
		}
	}
	return ok, ""
}

// matchList reports whether s matches a comma-separated pattern list
// with OpenSSH semantics (match_pattern_list): a matching negated
// pattern ("!p") means no match.
func matchList(s, list string) bool {
	got := false
	for _, p := range strings.Split(list, ",") {
		neg := strings.HasPrefix(p, "!")
		p = strings.TrimPrefix(p, "!")
		if wildcard(strings.ToLower(p), strings.ToLower(s)) {
			if neg {
				return false
			}
			got = true
		}
	}
	return got
}

// wildcard matches s against p with '*' and '?'.
func wildcard(p, s string) bool {
	for len(p) > 0 {
		switch p[0] {
		case '*':
			for i := len(s); i >= 0; i-- {
				if wildcard(p[1:], s[i:]) {
					return true
				}
			}
			return false
		case '?':
			if s == "" {
				return false
			}
		default:
			if s == "" || s[0] != p[0] {
				return false
			}
		}
		p, s = p[1:], s[1:]
	}
	return s == ""
}

// SplitShell splits s into words as a POSIX shell would, without
// expansions: whitespace separates words; single quotes keep
// everything; double quotes keep everything but \" \\ \$ \` ; a
// backslash outside quotes escapes the next character. Nix ≥ 2.26
// splits NIX_SSHOPTS this way (shellSplitString); older Nix split on
// whitespace only, which gives the same words for unquoted input.
func SplitShell(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '\\':
			if i+1 == len(s) {
				return nil, errors.New("backslash at the end")
			}
			i++
			if s[i] != '\n' {
				cur.WriteByte(s[i])
			}
			inWord = true
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, errors.New("unterminated single quote")
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\"\\$`\n", s[i+1]) >= 0 {
					i++
					if s[i] == '\n' {
						continue
					}
				}
				cur.WriteByte(s[i])
			}
			if i == len(s) {
				return nil, errors.New("unterminated double quote")
			}
			inWord = true
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// Quote returns s quoted for a POSIX shell if it needs quoting. Use it
// for words of commands offload builds itself; Nix joins the words of
// remote-program with spaces without quoting them.
func Quote(s string) string {
	if s == "" {
		return "''"
	}
	safe := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-_./:=+,@%", c) >= 0) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
