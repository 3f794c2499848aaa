#!/bin/sh
# gen-man.sh OUT BINDIR: writes the man pages of BINDIR/keepraftd and BINDIR/raftctl (their
# hidden `gen-man --out DIR` commands) into OUT. SOURCE_DATE_EPOCH fixes the pages' date.
set -e
out=$1
bin=$2
if [ -z "$out" ] || [ -z "$bin" ]; then
	echo "usage: gen-man.sh OUT BINDIR" >&2
	exit 2
fi
mkdir -p "$out"
"$bin/keepraftd" gen-man --out "$out" >/dev/null
"$bin/raftctl" gen-man --out "$out" >/dev/null
