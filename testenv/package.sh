#!/usr/bin/env bash
# Make sure COMMAND is on PATH, installing the Debian package PACKAGE (apt-get, as root) when not.
#
# Usage: testenv/package.sh COMMAND PACKAGE [WITHOUT]
#
# Every way it can fail ends in one line that says what to do. With WITHOUT (what happens
# without the tool), a machine where it cannot be installed (not root, no apt-get) is told so
# and the exit status is 0: the tool is optional there. A failed apt-get is always an error.
set -euo pipefail
command="$1" package="$2" without="${3:-}"
command -v "$command" >/dev/null && exit 0
cannot() {
  if [[ -n "$without" ]]; then echo "$command is missing and $1; $without" >&2; exit 0; fi
  echo "$command is missing and $1" >&2
  exit 1
}
[[ "$(id -u)" == 0 ]] || cannot "only root can install it: apt-get install $package (as root)"
command -v apt-get >/dev/null || cannot "this machine has no apt-get: install the package that has $command ($package on Debian)"
if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" >/dev/null; }; then
  echo "$command is missing and apt-get could not install $package (see above): check the network and apt's sources, then run this again" >&2
  exit 1
fi
