// SPDX-License-Identifier: MIT

package spec

import (
	"errors"
	"io/fs"
	"slices"
	"strings"
	"testing"
)

// Host keys: base64 -w0 of an ed25519 public key line, the key blob alone,
// and the placeholder from Nix's own unit tests (valid base64, not a key).
const (
	hostKey     = "c3NoLWVkMjU1MTkgQUFBQUMzTnphQzFsWkRJMU5URTVBQUFBSUNHd1FxeGttY2ZRazdsMWRvQ1BaL3VnRUVwTXJDMVNNVGFmeUMrbmxZTTUgcm9vdEBtY2ZsdXJyeQo="
	keyBlob     = "AAAAC3NzaC1lZDI1NTE5AAAAICGwQqxkmcfQk7l1doCPZ/ugEEpMrC1SMTafyC+nlYM5"
	placeholder = "SSH+HOST+PUBLIC+KEY+BASE64+ENCODED=="
	testSystem  = "TEST_ARCH-TEST_OS"
)

// show renders a machine for comparison: its Format line and its Source.
func show(m Machine) string { return Format(m) + " @" + m.Source }

func showAll(ms []Machine) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = show(m)
	}
	return out
}

func testFiles(files map[string]string) func(string) ([]byte, error) {
	return func(name string) ([]byte, error) {
		s, ok := files[name]
		if !ok {
			return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
		}
		return []byte(s), nil
	}
}

var tests = []struct {
	name    string
	in      string
	files   map[string]string
	lenient bool
	want    []string // show() of each machine
	wantErr string   // the error text, exactly
	warn    []string // substrings, one per warning, in order
	check   func(t *testing.T, ms []Machine)
}{
	// Expansion (machines.cc, expandBuilderLines).
	{name: "empty_setting_means_no_builders", in: ""},
	{name: "comment_only", in: "# nothing here\n"},
	{
		name: "uri_only_gets_defaults",
		in:   "nix@scratchy.labs.cs.uu.nl",
		want: []string{"ssh://nix@scratchy.labs.cs.uu.nl TEST_ARCH-TEST_OS - 1 1 - - - @builders:1"},
	},
	{
		name: "dash_means_default_in_every_column",
		in:   "nix@scratchy.labs.cs.uu.nl - - - - - - -",
		want: []string{"ssh://nix@scratchy.labs.cs.uu.nl TEST_ARCH-TEST_OS - 1 1 - - - @builders:1"},
	},
	{
		name: "newline_separates_machines",
		in:   "nix@scratchy.labs.cs.uu.nl\nnix@itchy.labs.cs.uu.nl",
		want: []string{
			"ssh://nix@scratchy.labs.cs.uu.nl TEST_ARCH-TEST_OS - 1 1 - - - @builders:1",
			"ssh://nix@itchy.labs.cs.uu.nl TEST_ARCH-TEST_OS - 1 1 - - - @builders:2",
		},
	},
	{
		name: "semicolon_separates_machines",
		in:   "nix@scratchy.labs.cs.uu.nl ; nix@itchy.labs.cs.uu.nl",
		want: []string{
			"ssh://nix@scratchy.labs.cs.uu.nl TEST_ARCH-TEST_OS - 1 1 - - - @builders:1",
			"ssh://nix@itchy.labs.cs.uu.nl TEST_ARCH-TEST_OS - 1 1 - - - @builders:1",
		},
	},
	{
		name: "nix2.8_semicolon_in_comment_splits_but_current_does_not",
		in:   "ssh://a x86_64-linux # old; ssh://b.invalid aarch64-linux",
		want: []string{"ssh://a x86_64-linux - 1 1 - - - @builders:1"},
		warn: []string{"builders:1: a ';' inside a '#' comment starts a new machine on Nix before 2.28.2"},
	},
	{
		// Nix's getMachinesWithCommentsAndSemicolonSeparator.
		name: "current_strips_comment_before_semicolon_split",
		in: "# This is a comment ; this is still that comment\n" +
			"nix@scratchy.labs.cs.uu.nl ; nix@itchy.labs.cs.uu.nl\n" +
			"# This is also a comment ; this also is still that comment\n" +
			"nix@scabby.labs.cs.uu.nl\n",
		want: []string{
			"ssh://nix@scratchy.labs.cs.uu.nl TEST_ARCH-TEST_OS - 1 1 - - - @builders:2",
			"ssh://nix@itchy.labs.cs.uu.nl TEST_ARCH-TEST_OS - 1 1 - - - @builders:2",
			"ssh://nix@scabby.labs.cs.uu.nl TEST_ARCH-TEST_OS - 1 1 - - - @builders:4",
		},
		warn: []string{"builders:1: a ';' inside a '#' comment starts a new machine on Nix before 2.28.2 (e.g. 2.8), which then reads the rest of the comment as a builder (2 places in builders)"},
	},
	{
		// Nix's getMachinesWithFunnyWhitespace: current trims every piece.
		name: "nix2.8_fails_on_whitespace_pieces_current_skips_them",
		in: "        # comment ; comment\n" +
			"   nix@scratchy.labs.cs.uu.nl ; nix@itchy.labs.cs.uu.nl   \n" +
			"\n    \n" +
			"\n ;;; \n" +
			"\n ; ; \n" +
			"nix@scabby.labs.cs.uu.nl\n\n",
		want: []string{
			"ssh://nix@scratchy.labs.cs.uu.nl TEST_ARCH-TEST_OS - 1 1 - - - @builders:2",
			"ssh://nix@itchy.labs.cs.uu.nl TEST_ARCH-TEST_OS - 1 1 - - - @builders:2",
			"ssh://nix@scabby.labs.cs.uu.nl TEST_ARCH-TEST_OS - 1 1 - - - @builders:9",
		},
		warn: []string{
			"builders:1: a ';' inside",
			"builders:1: a line or ';'-piece holding only whitespace",
		},
	},
	{
		name: "trailing_semicolon_and_space_fails_on_nix2.8",
		in:   "ssh://b1 x86_64-linux ; ",
		want: []string{"ssh://b1 x86_64-linux - 1 1 - - - @builders:1"},
		warn: []string{"only whitespace"},
	},
	{
		name: "trailing_semicolon_without_space_is_fine_everywhere",
		in:   "ssh://b1 x86_64-linux;",
		want: []string{"ssh://b1 x86_64-linux - 1 1 - - - @builders:1"},
	},
	{
		name: "crlf_lines",
		in:   "ssh://b1 aarch64-linux - 4\r\n\r\nssh://b2 x86_64-linux\r\n",
		want: []string{
			"ssh://b1 aarch64-linux - 4 1 - - - @builders:1",
			"ssh://b2 x86_64-linux - 1 1 - - - @builders:3",
		},
		warn: []string{"builders:2: a line or ';'-piece holding only whitespace"},
	},
	{
		// Nix's getMachinesWithCorrectCompleteSingleBuilderWithTabColumnDelimiter.
		name: "tabs_separate_fields",
		in:   "nix@scratchy.labs.cs.uu.nl\ti686-linux\t/home/nix/.ssh/id_scratchy_auto\t8\t3\tkvm\tbenchmark\t" + hostKey,
		want: []string{"ssh://nix@scratchy.labs.cs.uu.nl i686-linux /home/nix/.ssh/id_scratchy_auto 8 3 kvm benchmark " + hostKey + " @builders:1"},
	},
	{
		name:    "vertical_tab_is_not_a_separator",
		in:      "ssh://b1\vx86_64-linux",
		wantErr: `builders:1: store URI "ssh://b1\vx86_64-linux": contains a control character`,
	},
	{
		name: "fields_past_the_eighth_are_ignored",
		in:   "b1 x86_64-linux - 2 1 - - - extra words here",
		want: []string{"ssh://b1 x86_64-linux - 2 1 - - - @builders:1"},
	},

	// Includes.
	{
		name:  "include_file",
		in:    "@/etc/nix/machines",
		files: map[string]string{"/etc/nix/machines": "# c\nb1 x86_64-linux\n"},
		want:  []string{"ssh://b1 x86_64-linux - 1 1 - - - @/etc/nix/machines:2"},
	},
	{
		name:  "include_path_is_trimmed",
		in:    "b0 ; @  /m  ; b2",
		files: map[string]string{"/m": "b1"},
		want: []string{
			"ssh://b0 TEST_ARCH-TEST_OS - 1 1 - - - @builders:1",
			"ssh://b1 TEST_ARCH-TEST_OS - 1 1 - - - @/m:1",
			"ssh://b2 TEST_ARCH-TEST_OS - 1 1 - - - @builders:1",
		},
		// 2.8 includes only a piece whose first byte is '@'.
		warn: []string{"an '@' include after leading whitespace"},
	},
	{
		name:  "include_recursive",
		in:    "@/a",
		files: map[string]string{"/a": "a1\n@/b\na2", "/b": "b1"},
		want: []string{
			"ssh://a1 TEST_ARCH-TEST_OS - 1 1 - - - @/a:1",
			"ssh://b1 TEST_ARCH-TEST_OS - 1 1 - - - @/b:1",
			"ssh://a2 TEST_ARCH-TEST_OS - 1 1 - - - @/a:3",
		},
	},
	{name: "missing_include_is_empty", in: "@/not/a/file"},
	{name: "empty_include_path_is_missing", in: "@"},
	{
		name:    "include_cycle_is_an_error",
		in:      "@/a",
		files:   map[string]string{"/a": "a1\n@/b", "/b": "@/a"},
		wantErr: `/b:1: include "/a": include cycle: /a -> /b -> /a`,
	},
	{
		name:    "include_of_itself",
		in:      "@/a",
		files:   map[string]string{"/a": "\n\n@/a"},
		wantErr: `/a:3: include "/a": include cycle: /a -> /a`,
	},
	{
		name:    "include_cycle_lenient_skips_it",
		in:      "@/a",
		lenient: true,
		files:   map[string]string{"/a": "a1\n@/a"},
		want:    []string{"ssh://a1 TEST_ARCH-TEST_OS - 1 1 - - - @/a:1"},
		warn:    []string{`/a:2: include "/a": include cycle: /a -> /a; include skipped`},
	},
	{
		name:  "nix2.8_reads_indented_include_as_machine",
		in:    "  @/m",
		files: map[string]string{"/m": "b1"},
		want:  []string{"ssh://b1 TEST_ARCH-TEST_OS - 1 1 - - - @/m:1"},
		warn:  []string{`builders:1: an '@' include after leading whitespace`},
	},

	// Field 1: store URI (machines.cc, Machine::Machine).
	{
		name:    "dash_store_uri_is_an_error",
		in:      "- x86_64-linux",
		wantErr: "builders:1: no store URI in the first column",
	},
	{
		name: "ssh_ng_uri",
		in:   "ssh-ng://root@b1 x86_64-linux",
		want: []string{"ssh-ng://root@b1 x86_64-linux - 1 1 - - - @builders:1"},
		check: func(t *testing.T, ms []Machine) {
			m := ms[0]
			if m.Scheme != "ssh-ng" || m.User != "root" || m.Host != "b1" || m.Name != "b1" || m.Port != 0 || m.Key() != "ssh-ng://root@b1" {
				t.Errorf("got %+v", m)
			}
		},
	},
	{
		name: "nix2.31_port_in_uri",
		in:   "ssh://nix@b1:2222 x86_64-linux",
		want: []string{"ssh://nix@b1:2222 x86_64-linux - 1 1 - - - @builders:1"},
		warn: []string{`Nix before 2.31 (e.g. 2.8) cannot take a port in the URI and runs ssh with "nix@b1:2222" as the host name`},
		check: func(t *testing.T, ms []Machine) {
			if m := ms[0]; m.Port != 2222 || m.Host != "b1" || m.Name != "b1" {
				t.Errorf("got %+v", m)
			}
		},
	},
	{
		// Nix's getMachinesUriWithPort.
		name: "bare_host_with_port",
		in:   "nix@scratchy.labs.cs.uu.nl:2222",
		want: []string{"ssh://nix@scratchy.labs.cs.uu.nl:2222 TEST_ARCH-TEST_OS - 1 1 - - - @builders:1"},
		warn: []string{"Nix before 2.31"},
	},
	{
		name: "port_leading_zero_is_normalised",
		in:   "ssh://b1:022",
		want: []string{"ssh://b1:22 TEST_ARCH-TEST_OS - 1 1 - - - @builders:1"},
		warn: []string{"Nix before 2.31"},
	},
	{
		name: "ipv6_brackets_removed_from_host",
		in:   "ssh://[::1] ; root@[fe80::1] ; ssh://[2001:db8::2]:2222",
		want: []string{
			"ssh://[::1] TEST_ARCH-TEST_OS - 1 1 - - - @builders:1",
			"ssh://root@[fe80::1] TEST_ARCH-TEST_OS - 1 1 - - - @builders:1",
			"ssh://[2001:db8::2]:2222 TEST_ARCH-TEST_OS - 1 1 - - - @builders:1",
		},
		warn: []string{"Nix before 2.31"},
		check: func(t *testing.T, ms []Machine) {
			if ms[0].Host != "::1" || ms[1].Host != "fe80::1" || ms[1].User != "root" || ms[2].Port != 2222 {
				t.Errorf("got %+v", ms)
			}
		},
	},
	{name: "ipv6_unclosed", in: "ssh://[::1", wantErr: `builders:1: store URI "ssh://[::1": missing ']' after IPv6 address`},
	{name: "bad_port", in: "ssh://b1:ssh", wantErr: `builders:1: store URI "ssh://b1:ssh": bad port "ssh"`},
	{name: "port_zero", in: "ssh://b1:0", wantErr: `builders:1: store URI "ssh://b1:0": bad port "0"`},
	{name: "port_too_large", in: "ssh://b1:65536", wantErr: `builders:1: store URI "ssh://b1:65536": bad port "65536"`},
	{name: "host_like_an_option", in: "ssh://-oProxyCommand=x", wantErr: `builders:1: store URI "ssh://-oProxyCommand=x": host name starts with '-'`},
	{name: "empty_host", in: "ssh://nix@", wantErr: `builders:1: store URI "ssh://nix@": no host name`},
	{name: "path_after_host", in: "ssh://b1/store", wantErr: `builders:1: store URI "ssh://b1/store": unexpected path after the host`},
	{
		name: "local_stores_stay_local",
		in:   "/tmp/store ; local?root=/tmp/nix ; auto ; daemon ; local ; ?root=/x ; unix:///run/nix.sock",
		want: []string{
			"/tmp/store TEST_ARCH-TEST_OS - 1 1 - - - @builders:1",
			"local?root=/tmp/nix TEST_ARCH-TEST_OS - 1 1 - - - @builders:1",
			"auto TEST_ARCH-TEST_OS - 1 1 - - - @builders:1",
			"daemon TEST_ARCH-TEST_OS - 1 1 - - - @builders:1",
			"local TEST_ARCH-TEST_OS - 1 1 - - - @builders:1",
			"?root=/x TEST_ARCH-TEST_OS - 1 1 - - - @builders:1",
			"unix:///run/nix.sock TEST_ARCH-TEST_OS - 1 1 - - - @builders:1",
		},
		check: func(t *testing.T, ms []Machine) {
			for _, m := range ms[:6] {
				if m.Scheme != "" {
					t.Errorf("%s: Scheme = %q, want \"\"", m.URI, m.Scheme)
				}
			}
			if ms[1].Params["root"] != "/tmp/nix" {
				t.Errorf("local?root=/tmp/nix: Params = %v", ms[1].Params)
			}
			if ms[6].Scheme != "unix" {
				t.Errorf("unix://: Scheme = %q", ms[6].Scheme)
			}
		},
	},
	{
		name: "query_parameters_kept_out_of_uri",
		in:   "ssh://b1?remote-program=nix-daemon&remote-store=%2Ftmp%2Fs&compress=true&dubious x86_64-linux",
		want: []string{"ssh://b1?compress=true&remote-program=nix-daemon&remote-store=/tmp/s x86_64-linux - 1 1 - - - @builders:1"},
		check: func(t *testing.T, ms []Machine) {
			m := ms[0]
			if m.URI != "ssh://b1" || len(m.Params) != 3 || m.Params["remote-store"] != "/tmp/s" {
				t.Errorf("got URI %q Params %v", m.URI, m.Params)
			}
		},
	},
	{
		name: "first_duplicate_query_parameter_wins",
		in:   "ssh://b1?remote-program=a&remote-program=b",
		check: func(t *testing.T, ms []Machine) {
			if got := ms[0].Params["remote-program"]; got != "a" {
				t.Errorf("remote-program = %q, want a", got)
			}
		},
		want: []string{"ssh://b1?remote-program=a TEST_ARCH-TEST_OS - 1 1 - - - @builders:1"},
	},
	{name: "bad_query_escape", in: "ssh://b1?k=%zz", wantErr: `builders:1: store URI "ssh://b1?k=%zz": bad escape "%zz" in query`},
	{
		name: "ssh_key_query_used_when_field_unset",
		in:   "ssh://b1?ssh-key=/root/k x86_64-linux",
		check: func(t *testing.T, ms []Machine) {
			if ms[0].SSHKey != "/root/k" {
				t.Errorf("SSHKey = %q, want /root/k", ms[0].SSHKey)
			}
		},
		want: []string{"ssh://b1?ssh-key=/root/k x86_64-linux - 1 1 - - - @builders:1"},
	},
	{
		name: "ssh_key_field_wins_over_query",
		in:   "ssh://b1?ssh-key=/root/k x86_64-linux /root/field",
		check: func(t *testing.T, ms []Machine) {
			if ms[0].SSHKey != "/root/field" || ms[0].Params["ssh-key"] != "/root/k" {
				t.Errorf("SSHKey = %q, Params %v", ms[0].SSHKey, ms[0].Params)
			}
		},
		want: []string{"ssh://b1?ssh-key=/root/k x86_64-linux /root/field 1 1 - - - @builders:1"},
	},
	{
		name: "host_key_query_used_when_field_unset",
		in:   "ssh://b1?base64-ssh-public-host-key=" + hostKey,
		check: func(t *testing.T, ms []Machine) {
			if ms[0].PublicHostKey != hostKey {
				t.Errorf("PublicHostKey = %q", ms[0].PublicHostKey)
			}
		},
		want: []string{"ssh://b1?base64-ssh-public-host-key=" + hostKey + " TEST_ARCH-TEST_OS - 1 1 - - - @builders:1"},
	},
	{
		name:    "host_key_query_checked",
		in:      "ssh://b1?base64-ssh-public-host-key=" + placeholder,
		wantErr: `builders:1: base64-ssh-public-host-key "SSH+HOST+PUBLIC+KEY+BASE64+ENCODED==": does not decode to an SSH public key line`,
	},

	// Field 2: systems.
	{
		name: "systems_are_a_sorted_set",
		in:   "b1 x86_64-linux,aarch64-linux,x86_64-linux",
		want: []string{"ssh://b1 aarch64-linux,x86_64-linux - 1 1 - - - @builders:1"},
	},
	{
		name: "systems_of_only_commas_is_no_system",
		in:   "b1 ,,",
		want: []string{"ssh://b1 , - 1 1 - - - @builders:1"},
		check: func(t *testing.T, ms []Machine) {
			if ms[0].Systems != nil {
				t.Errorf("Systems = %q, want none", ms[0].Systems)
			}
		},
	},

	// Field 4: max jobs.
	{name: "max_jobs_word", in: "nix@scratchy.labs.cs.uu.nl - - eight", wantErr: `builders:1: max jobs "eight": not a whole number`},
	{name: "max_jobs_negative", in: "nix@scratchy.labs.cs.uu.nl - - -1", wantErr: `builders:1: max jobs "-1": not a whole number`},
	{name: "max_jobs_decimal", in: "b1 - - 1.5", wantErr: `builders:1: max jobs "1.5": not a whole number`},
	{name: "max_jobs_too_large", in: "b1 - - 99999999999", wantErr: `builders:1: max jobs "99999999999": too large`},
	{name: "max_jobs_plus_sign_accepted_like_lexical_cast", in: "b1 - - +2", want: []string{"ssh://b1 TEST_ARCH-TEST_OS - 2 1 - - - @builders:1"}},
	{name: "max_jobs_zero_accepted", in: "b1 - - 0", want: []string{"ssh://b1 TEST_ARCH-TEST_OS - 0 1 - - - @builders:1"}},

	// Field 5: speed factor (machines.cc, parseBuilderLine: an unsigned int
	// in Nix 2.8, a float from 2.20).
	{name: "speed_factor_word", in: "nix@scratchy.labs.cs.uu.nl - - 8 three", wantErr: `builders:1: speed factor "three": not a number`},
	{name: "nix2.20_speed_factor_negative_rejected", in: "nix@scratchy.labs.cs.uu.nl - - 8 -3", wantErr: `builders:1: speed factor "-3": must be >= 0`},
	{name: "speed_factor_zero_means_one", in: "b1 - - 1 0", want: []string{"ssh://b1 TEST_ARCH-TEST_OS - 1 1 - - - @builders:1"}},
	{
		name: "nix2.8_rejects_decimal_speed_factor_current_accepts",
		in:   "b1 - - 1 1.5",
		want: []string{"ssh://b1 TEST_ARCH-TEST_OS - 1 1.5 - - - @builders:1"},
		warn: []string{`builders:1: speed factor "1.5" is not a whole number: Nix before 2.20 (e.g. 2.8) rejects the line, and that fails every build`},
	},
	{name: "nix2.8_speed_factor_plus_sign_accepted", in: "b1 - - 1 +2", want: []string{"ssh://b1 TEST_ARCH-TEST_OS - 1 2 - - - @builders:1"}},
	{name: "speed_factor_exponent", in: "b1 - - 1 1e3", want: []string{"ssh://b1 TEST_ARCH-TEST_OS - 1 1000 - - - @builders:1"}, warn: []string{"not a whole number"}},
	{name: "speed_factor_zero_point_zero_means_one", in: "b1 - - 1 0.0", want: []string{"ssh://b1 TEST_ARCH-TEST_OS - 1 1 - - - @builders:1"}, warn: []string{"not a whole number"}},
	{name: "speed_factor_inf", in: "b1 - - 1 inf", wantErr: `builders:1: speed factor "inf": not a number`},
	{name: "speed_factor_nan", in: "b1 - - 1 NaN", wantErr: `builders:1: speed factor "NaN": not a number`},
	{name: "speed_factor_hex", in: "b1 - - 1 0x10", wantErr: `builders:1: speed factor "0x10": not a number`},
	{name: "speed_factor_beyond_float", in: "b1 - - 1 1e39", wantErr: `builders:1: speed factor "1e39": out of range`},

	// Fields 6 and 7: features.
	{
		// Nix's getMachinesWithMultiOptions.
		name: "features_are_sorted_sets",
		in:   "nix@scratchy.labs.cs.uu.nl Arch1,Arch2 - - - SupportedFeature2,SupportedFeature1 MandatoryFeature1,MandatoryFeature2",
		want: []string{"ssh://nix@scratchy.labs.cs.uu.nl Arch1,Arch2 - 1 1 SupportedFeature1,SupportedFeature2 MandatoryFeature1,MandatoryFeature2 - @builders:1"},
	},

	// Field 8: host key.
	{
		name: "host_key_valid",
		in:   "nix@scratchy.labs.cs.uu.nl i686-linux /home/nix/.ssh/id_scratchy_auto 8 3 kvm benchmark " + hostKey,
		want: []string{"ssh://nix@scratchy.labs.cs.uu.nl i686-linux /home/nix/.ssh/id_scratchy_auto 8 3 kvm benchmark " + hostKey + " @builders:1"},
	},
	{
		name: "host_key_without_padding_accepted_like_nix",
		in:   "b1 - - - - - - " + strings.TrimRight(hostKey, "="),
		want: []string{"ssh://b1 TEST_ARCH-TEST_OS - 1 1 - - " + strings.TrimRight(hostKey, "=") + " @builders:1"},
	},
	{
		name: "host_key_decoding_stops_at_equals_like_nix",
		in:   "b1 - - - - - - " + hostKey + "!!!",
		want: []string{"ssh://b1 TEST_ARCH-TEST_OS - 1 1 - - " + hostKey + "!!! @builders:1"},
	},
	{
		name:    "host_key_not_base64",
		in:      "nix@scratchy.labs.cs.uu.nl - - 8 3 - - BAD_BASE64",
		wantErr: `builders:1: host key "BAD_BASE64": not valid base64: invalid character in base64 string`,
	},
	{
		name:    "host_key_base64_but_not_a_key",
		in:      "nix@scratchy.labs.cs.uu.nl i686-linux /home/nix/.ssh/id_scratchy_auto 8 3 kvm benchmark " + placeholder,
		wantErr: `builders:1: host key "SSH+HOST+PUBLIC+KEY+BASE64+ENCODED==": does not decode to an SSH public key line such as "ssh-ed25519 AAAA… root@host" (get it with base64 -w0 /etc/ssh/ssh_host_ed25519_key.pub)`,
	},
	{
		name:    "host_key_is_the_blob_not_the_line",
		in:      "b1 - - - - - - " + keyBlob,
		wantErr: `builders:1: host key "AAAAC3NzaC1lZDI1NTE5AAAAICGwQqxkmcfQk7l1doCPZ/ugEEpMrC1SM...": this is the key's own base64 blob; field 8 is the base64 of the whole public key line (base64 -w0 /etc/ssh/ssh_host_ed25519_key.pub)`,
	},

	// Junk.
	{name: "invalid_utf8", in: "ssh://b\xff1", wantErr: `builders:1: store URI "ssh://b\xff1": not valid UTF-8`},
	{name: "nul_byte", in: "b1 x86\x00_64-linux", wantErr: `builders:1: systems "x86\x00_64-linux": contains a control character`},

	// Lenient (hook) mode.
	{
		name:    "lenient_skips_bad_line_and_names_it",
		in:      "b1\nb2 - - eight\nb3",
		lenient: true,
		want: []string{
			"ssh://b1 TEST_ARCH-TEST_OS - 1 1 - - - @builders:1",
			"ssh://b3 TEST_ARCH-TEST_OS - 1 1 - - - @builders:3",
		},
		warn: []string{`builders:2: max jobs "eight": not a whole number; line skipped`},
	},
	{
		name:    "strict_fails_on_bad_line",
		in:      "b1\nb2 - - eight\nb3",
		wantErr: `builders:2: max jobs "eight": not a whole number`,
	},
	{
		name:    "error_in_include_names_the_file",
		in:      "@/etc/nix/machines",
		files:   map[string]string{"/etc/nix/machines": "b1\n\nb3 - - eight"},
		wantErr: `/etc/nix/machines:3: max jobs "eight": not a whole number`,
	},
}

func TestParse(t *testing.T) {
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := Options{LocalSystem: testSystem, ReadFile: testFiles(tt.files), Lenient: tt.lenient}
			ms, ws, err := ParseBuilders(tt.in, o)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("ParseBuilders(%q) = %q, want error %q", tt.in, showAll(ms), tt.wantErr)
				}
				if got := err.Error(); !strings.HasPrefix(got, tt.wantErr) {
					t.Fatalf("ParseBuilders(%q) error = %q, want %q", tt.in, got, tt.wantErr)
				}
				var pe *ParseError
				if !errors.As(err, &pe) || pe.Line == 0 {
					t.Errorf("error %v is not a located *ParseError", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseBuilders(%q): %v", tt.in, err)
			}
			if got := showAll(ms); !slices.Equal(got, tt.want) && !(len(got) == 0 && len(tt.want) == 0) {
				t.Errorf("ParseBuilders(%q) =\n\t%s\nwant\n\t%s", tt.in, strings.Join(got, "\n\t"), strings.Join(tt.want, "\n\t"))
			}
			if len(ws) != len(tt.warn) {
				t.Errorf("ParseBuilders(%q) warnings = %q, want %d matching %q", tt.in, ws, len(tt.warn), tt.warn)
			} else {
				for i, w := range ws {
					if !strings.Contains(w.String(), tt.warn[i]) {
						t.Errorf("warning %d = %q, want it to contain %q", i, w, tt.warn[i])
					}
				}
			}
			if tt.check != nil && len(ms) > 0 {
				tt.check(t, ms)
			}
		})
	}
}

func TestParseErrorUnwrap(t *testing.T) {
	_, _, err := ParseBuilders("@/a", Options{ReadFile: testFiles(map[string]string{"/a": "@/a"})})
	if !errors.Is(err, ErrIncludeCycle) {
		t.Errorf("ParseBuilders(@/a including itself) error = %v, want ErrIncludeCycle", err)
	}
	var pe *ParseError
	if !errors.As(err, &pe) || pe.File != "/a" || pe.Line != 1 || pe.Field != "include" {
		t.Errorf("error = %#v, want ParseError at /a:1 field include", err)
	}
}

func TestIncludeReadErrorIsAnError(t *testing.T) {
	denied := func(string) ([]byte, error) { return nil, &fs.PathError{Op: "open", Path: "/m", Err: fs.ErrPermission} }
	_, _, err := ParseBuilders("@/m", Options{ReadFile: denied})
	if err == nil || err.Error() != `builders:1: include "/m": permission denied` {
		t.Errorf("ParseBuilders(@unreadable) error = %v, want permission denied at builders:1", err)
	}
	ms, ws, err := ParseBuilders("b1\n@/m", Options{ReadFile: denied, Lenient: true, LocalSystem: testSystem})
	if err != nil || len(ms) != 1 || len(ws) != 1 {
		t.Errorf("lenient: ms %v ws %v err %v, want one machine and one warning", ms, ws, err)
	}
}

func TestIncludeDepthCapped(t *testing.T) {
	// Distinct names, so no cycle: only the depth cap stops it.
	n := 0
	deep := func(string) ([]byte, error) {
		n++
		return []byte("@/f" + strings.Repeat("x", n)), nil
	}
	_, _, err := ParseBuilders("@/f", Options{ReadFile: deep})
	if err == nil || !strings.Contains(err.Error(), "nested more than 32 deep") {
		t.Errorf("ParseBuilders(endless includes) error = %v, want depth error", err)
	}
}

func TestInputCapped(t *testing.T) {
	big := strings.Repeat("# padding\n", 1<<20) // 10 MiB
	files := testFiles(map[string]string{"/a": big, "/b": big})
	_, _, err := ParseBuilders("@/a\n@/b", Options{ReadFile: files, Lenient: true})
	if !errors.Is(err, ErrTooLarge) {
		t.Errorf("ParseBuilders(20 MiB of includes) error = %v, want ErrTooLarge", err)
	}
}

func TestDefaultSystem(t *testing.T) {
	ms, _, err := ParseBuilders("b1", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if want := LocalSystem(); !slices.Equal(ms[0].Systems, []string{want}) {
		t.Errorf("Systems = %q, want [%q]", ms[0].Systems, want)
	}
	if s := LocalSystem(); !strings.HasSuffix(s, "-linux") && !strings.Contains(s, "-") {
		t.Errorf("LocalSystem() = %q, want arch-os", s)
	}
}

func TestParseReader(t *testing.T) {
	ms, _, err := Parse(strings.NewReader("b1\n\nb2 - - 3\n"), "/etc/nix/machines", Options{LocalSystem: testSystem})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"ssh://b1 TEST_ARCH-TEST_OS - 1 1 - - - @/etc/nix/machines:1",
		"ssh://b2 TEST_ARCH-TEST_OS - 3 1 - - - @/etc/nix/machines:3",
	}
	if got := showAll(ms); !slices.Equal(got, want) {
		t.Errorf("Parse = %q, want %q", got, want)
	}
	_, _, err = Parse(strings.NewReader("@/etc/nix/machines"), "/etc/nix/machines", Options{})
	if !errors.Is(err, ErrIncludeCycle) {
		t.Errorf("Parse(file including itself) error = %v, want ErrIncludeCycle", err)
	}
}

// TestLegacyRemoteSystems pins that the NIX_REMOTE_SYSTEMS file format of
// Nix 1.x (build-remote.pl: user@host, systems, key, max jobs, speed,
// features, mandatory features) parses as a machines file.
func TestLegacyRemoteSystems(t *testing.T) {
	in := "nix@scratchy.labs.cs.uu.nl  i686-linux,x86_64-linux  /home/nix/.ssh/id_scratchy_auto  8 1 kvm\n" +
		"nix@itchy.labs.cs.uu.nl     x86_64-darwin  /home/nix/.ssh/id_itchy  2\n"
	ms, _, err := Parse(strings.NewReader(in), "/etc/nix.machines", Options{LocalSystem: testSystem})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"ssh://nix@scratchy.labs.cs.uu.nl i686-linux,x86_64-linux /home/nix/.ssh/id_scratchy_auto 8 1 kvm - - @/etc/nix.machines:1",
		"ssh://nix@itchy.labs.cs.uu.nl x86_64-darwin /home/nix/.ssh/id_itchy 2 1 - - - @/etc/nix.machines:2",
	}
	if got := showAll(ms); !slices.Equal(got, want) {
		t.Errorf("Parse(legacy) =\n%q\nwant\n%q", got, want)
	}
	if ms[0].User != "nix" || ms[0].Name != "scratchy.labs.cs.uu.nl" {
		t.Errorf("User, Name = %q, %q", ms[0].User, ms[0].Name)
	}
}

func TestParse10000Lines(t *testing.T) {
	var b strings.Builder
	for i := range 10000 {
		switch i % 4 {
		case 0:
			b.WriteString("# comment line\r\n")
		case 1:
			b.WriteString("ssh://b")
			b.WriteString(strings.Repeat("x", i%7))
			b.WriteString("-")
			b.WriteString(strings.Repeat("y", i%13))
			b.WriteString(" x86_64-linux,aarch64-linux - 4 2 kvm,big-parallel\n")
		case 2:
			b.WriteString("\tssh-ng://root@c ; d\taarch64-linux # trailing\n")
		case 3:
			b.WriteString("\n")
		}
	}
	ms, _, err := ParseBuilders(b.String(), Options{LocalSystem: testSystem})
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 7500 {
		t.Errorf("parsed %d machines, want 7500", len(ms))
	}
	if got := ms[len(ms)-1].Source; got != "builders:9999" {
		t.Errorf("last Source = %q, want builders:9999", got)
	}
}

func TestNixBase64Decode(t *testing.T) {
	for _, tt := range []struct {
		in, want string
		err      bool
	}{
		{in: "", want: ""},
		{in: "YQ==", want: "a"},
		{in: "YQ", want: "a"},
		{in: "YWJj", want: "abc"},
		{in: "YW\nJj", want: "abc"},
		{in: "YQ==garbage!", want: "a"},
		{in: "YW Jj", err: true},
		{in: "YW-j", err: true},
		{in: "YW_j", err: true},
	} {
		got, err := nixBase64Decode(tt.in)
		if (err != nil) != tt.err || string(got) != tt.want {
			t.Errorf("nixBase64Decode(%q) = %q, %v; want %q, error %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}
