#!/bin/sh
# debian-mirror.sh SUITE: print the first Debian archive in this machine's
# apt configuration that serves SUITE (sid, bookworm, ...), for
# debootstrap. Exits 1 when none does.
set -eu
[ $# -eq 1 ] || { echo "usage: $0 SUITE" >&2; exit 2; }
suite=$1

# mirrors prints the URIs of the machine's apt sources, one a line, in
# the order apt reads them: one-line "deb" entries of sources.list and
# *.list, then deb822 "URIs:" fields of *.sources entries of type deb.
# Entries for security updates are left out: they do not carry sid.
mirrors() {
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -f "$f" ] || continue
		# deb [options] URI suite components...
		sed -n 's/^[[:space:]]*deb[[:space:]]\{1,\}\(\[[^]]*\][[:space:]]\{1,\}\)\{0,1\}\([^[:space:]]\{1,\}\)[[:space:]]\{1,\}\([^[:space:]]\{1,\}\).*/\2 \3/p' "$f"
	done
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		# Stanzas are separated by blank lines; print "URI suites" for
		# every URI of every stanza of type deb.
		awk '
			function flush() {
				if (types ~ /(^| )deb( |$)/ && enabled != "no")
					for (i = 1; i <= nu; i++) print uris[i], suites
				types = ""; suites = ""; nu = 0; enabled = ""
			}
			/^[[:space:]]*#/ { next }
			/^[[:space:]]*$/ { flush(); next }
			{
				key = tolower($1); sub(/:$/, "", key)
				val = $0; sub(/^[^:]*:[[:space:]]*/, "", val)
				if (key == "types") types = val
				else if (key == "suites") suites = val
				else if (key == "enabled") enabled = tolower(val)
				else if (key == "uris") nu = split(val, uris, /[[:space:]]+/)
			}
			END { flush() }
		' "$f"
	done | awk '{ print $1, $2 }'
}

pick_mirror() {
	mirrors | while read -r uri suites; do
		case $suites in *-security | */updates) continue ;; esac
		case $uri in http://* | https://*) ;; *) continue ;; esac
		uri=${uri%/}
		# The first archive that serves the suite wins; the others (a
		# vendor's repository, say) do not have it.
		if wget -q -T 20 -O /dev/null "$uri/dists/$suite/Release" 2>/dev/null; then
			echo "$uri"
			return
		fi
	done
}

m=$(pick_mirror)
[ -n "$m" ] || exit 1
echo "$m"
