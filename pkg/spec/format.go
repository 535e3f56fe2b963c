// SPDX-License-Identifier: MIT

package spec

import (
	"encoding/json"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

// Key is the machine's stable identity: its normalised URI, without query
// parameters for SSH stores. pkg/slots keys its records by it.
func (m Machine) Key() string { return m.URI }

func (m Machine) isSSH() bool { return m.Scheme == "ssh" || m.Scheme == "ssh-ng" }

// Format returns a machines-file line that parses back to m (apart from
// Source). Unset fields are written as "-".
func Format(m Machine) string {
	var b strings.Builder
	b.WriteString(m.URI)
	if m.isSSH() && len(m.Params) > 0 {
		keys := make([]string, 0, len(m.Params))
		for k := range m.Params {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			if i == 0 {
				b.WriteByte('?')
			} else {
				b.WriteByte('&')
			}
			escape(&b, k, "")
			b.WriteByte('=')
			escape(&b, m.Params[k], "=") // only the first '=' separates
		}
	}
	b.WriteByte(' ')
	// An empty systems list must not read back as the local system.
	b.WriteString(formatList(m.Systems, ","))
	b.WriteByte(' ')
	if v, ok := m.Params["ssh-key"]; m.SSHKey == "" || (m.isSSH() && ok && v == m.SSHKey) {
		b.WriteByte('-')
	} else {
		b.WriteString(m.SSHKey)
	}
	b.WriteByte(' ')
	b.WriteString(strconv.Itoa(m.MaxJobs))
	b.WriteByte(' ')
	b.WriteString(strconv.FormatFloat(m.SpeedFactor, 'g', -1, 64))
	b.WriteByte(' ')
	b.WriteString(formatList(m.SupportedFeatures, "-"))
	b.WriteByte(' ')
	b.WriteString(formatList(m.MandatoryFeatures, "-"))
	b.WriteByte(' ')
	if v, ok := m.Params["base64-ssh-public-host-key"]; m.PublicHostKey == "" || (m.isSSH() && ok && v == m.PublicHostKey) {
		b.WriteByte('-')
	} else {
		b.WriteString(m.PublicHostKey)
	}
	return b.String()
}

func formatList(l []string, empty string) string {
	s := strings.Join(l, ",")
	switch s {
	case "":
		return empty
	case "-":
		return "-," // a list holding "-" alone, not "unset"
	}
	return s
}

// escape percent-encodes a query key or value, keeping only characters
// that mean nothing to the parser.
func escape(b *strings.Builder, s, keep string) {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~/:,@+", c) >= 0 || strings.IndexByte(keep, c) >= 0 {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
}

// jsonMachine is the --json form of a Machine. Lists are sorted and never
// null; absent strings are "". New keys (per-system native or emulated
// information, health) are added here.
type jsonMachine struct {
	URI               string            `json:"uri"`
	Name              string            `json:"name"`
	Systems           []string          `json:"systems"`
	SSHKey            string            `json:"sshKey"`
	MaxJobs           int               `json:"maxJobs"`
	SpeedFactor       float64           `json:"speedFactor"`
	SupportedFeatures []string          `json:"supportedFeatures"`
	MandatoryFeatures []string          `json:"mandatoryFeatures"`
	PublicHostKey     string            `json:"publicHostKey"`
	Source            string            `json:"source"`
	Params            map[string]string `json:"params"`
	Exec              map[string]any    `json:"exec,omitempty"`
}

func nonNil(l []string) []string {
	if l == nil {
		return []string{}
	}
	l = slices.Clone(l)
	slices.Sort(l)
	return l
}

// WriteJSON writes ms as an indented JSON array, one object per machine
// with the keys uri, name, systems, sshKey, maxJobs, speedFactor,
// supportedFeatures, mandatoryFeatures, publicHostKey, source and params.
func WriteJSON(w io.Writer, ms []Machine) error {
	return WriteJSONExec(w, ms, nil)
}

// WriteJSONExec is WriteJSON with, per machine, an "exec" object that maps
// each system to what the caller knows of how the machine runs it: exec[i]
// belongs to ms[i]; nil or missing entries leave it out.
func WriteJSONExec(w io.Writer, ms []Machine, exec []map[string]any) error {
	out := make([]jsonMachine, len(ms))
	for i, m := range ms {
		params := m.Params
		if params == nil {
			params = map[string]string{}
		}
		out[i] = jsonMachine{
			URI:               m.URI,
			Name:              m.Name,
			Systems:           nonNil(m.Systems),
			SSHKey:            m.SSHKey,
			MaxJobs:           m.MaxJobs,
			SpeedFactor:       m.SpeedFactor,
			SupportedFeatures: nonNil(m.SupportedFeatures),
			MandatoryFeatures: nonNil(m.MandatoryFeatures),
			PublicHostKey:     m.PublicHostKey,
			Source:            m.Source,
			Params:            params,
		}
		if i < len(exec) {
			out[i].Exec = exec[i]
		}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// WriteTable writes ms as an aligned table with one row per machine: host
// (the URI), systems, jobs, speed, features, mandatory, host-key (yes/no)
// and source.
func WriteTable(w io.Writer, ms []Machine) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	io.WriteString(tw, "HOST\tSYSTEMS\tJOBS\tSPEED\tFEATURES\tMANDATORY\tHOST-KEY\tSOURCE\n")
	for _, m := range ms {
		hostKey := "no"
		if m.PublicHostKey != "" {
			hostKey = "yes"
		}
		row := []string{
			Printable(m.URI),
			Printable(dash(m.Systems)),
			strconv.Itoa(m.MaxJobs),
			strconv.FormatFloat(m.SpeedFactor, 'g', -1, 64),
			Printable(dash(m.SupportedFeatures)),
			Printable(dash(m.MandatoryFeatures)),
			hostKey,
			Printable(m.Source),
		}
		io.WriteString(tw, strings.Join(row, "\t")+"\n")
	}
	return tw.Flush()
}

func dash(l []string) string {
	if len(l) == 0 {
		return "-"
	}
	return strings.Join(l, ",")
}
