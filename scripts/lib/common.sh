# Shared by the scripts: find the repository, install what is missing on a Debian machine.
# shellcheck shell=bash
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export ROOT

log() { printf '==> %s\n' "$*" >&2; }

# Installs Debian packages that are missing (needs root or sudo).
apt_install() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  log "installing ${missing[*]}"
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

# What building and testing need: LMDB's headers and library, pkg-config to find them, python3 for
# the independent checks, socat for the README's examples.
ensure_deps() {
  apt_install liblmdb-dev lmdb-utils pkg-config python3 socat
  command -v swift >/dev/null || { echo "swift is not on PATH; install Swift 6 (https://swift.org) first" >&2; exit 1; }
}

# What the tests need beyond building: headless Chromium renders the HTML report (EndToEndTests).
ensure_test_deps() {
  ensure_deps
  apt_install chromium fonts-dejavu-core
}
