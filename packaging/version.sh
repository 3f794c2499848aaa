#!/bin/sh
# Prints the Debian package version of the work tree: the latest vX.Y.Z tag without its v
# (1.2.0, or 1.2.0+3.gabc1234 for commits after it), else 0.0.0+git<commit>; ".dirty"
# marks uncommitted changes. Only characters a Debian upstream version allows.
set -e
cd "$(dirname "$0")/.."
dirty=""
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
	dirty=".dirty"
fi
if v=$(git describe --tags --match 'v[0-9]*' 2>/dev/null); then
	# v1.2.0-3-gabc1234 -> 1.2.0+3.gabc1234; v1.2.0-rc1 -> 1.2.0~rc1 (sorts before 1.2.0)
	echo "$v" | sed -e 's/^v//' -e 's/-\([0-9]*\)-g\([0-9a-f]*\)$/+\1.g\2/' -e 's/-/~/g' -e "s/\$/$dirty/"
elif c=$(git rev-parse --short HEAD 2>/dev/null); then
	echo "0.0.0+git$c$dirty"
else
	echo "0.0.0"
fi
