#!/usr/bin/env bash
# Installs what building cpp/ against ONNX Runtime needs on Debian/Ubuntu (run as root; idempotent, quiet):
#   - cmake, g++, make, nlohmann-json3-dev, libstb-dev  (apt-get install)
#   - ONNX Runtime's C/C++ headers: Debian's libonnxruntime-dev package, *unpacked* (not installed) into
#     cpp/.deps/onnxruntime-dev/ where cpp/CMakeLists.txt looks for it. Debian 12 (bookworm) has no such
#     package, so it is fetched with apt-get from Debian 13 (trixie) through a private, temporary source
#     list: the system's apt configuration is left untouched, and nothing from trixie is installed.
# The library itself comes from the onnxruntime Python wheel (onnxruntime/capi/libonnxruntime.so.1.*).
#
# Usage: bash cpp/install_deps.sh          (from anywhere; exits 0 when everything is already there)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
headers_dir="$here/.deps/onnxruntime-dev"
header="$headers_dir/usr/include/onnxruntime/onnxruntime_cxx_api.h"
packages=(cmake g++ make nlohmann-json3-dev libstb-dev)
export DEBIAN_FRONTEND=noninteractive

sudo_=""
if [ "$(id -u)" -ne 0 ]; then sudo_="sudo"; fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "install_deps.sh: apt-get install ${missing[*]}" >&2
  if ! log="$($sudo_ apt-get update -qq 2>&1 && $sudo_ apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" 2>&1)"; then
    echo "$log" >&2
    echo "install_deps.sh: apt-get install failed" >&2
    exit 1
  fi
fi

if [ ! -f "$header" ]; then
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  mkdir -p "$work/lists/partial"
  chmod -R a+rwx "$work"  # apt downloads as the unprivileged _apt user
  apt_opts=()
  if ! apt-cache policy libonnxruntime-dev 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    # Not in this release's sources (Debian 12): read Debian 13's package list, in $work only.
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" \
      >"$work/sources.list"
    apt_opts=(-o "Dir::Etc::SourceList=$work/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
      -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work")
    echo "install_deps.sh: fetching libonnxruntime-dev (headers) from Debian trixie" >&2
    apt-get -qq "${apt_opts[@]}" update
  fi
  (cd "$work" && apt-get -qq "${apt_opts[@]}" download libonnxruntime-dev >/dev/null)
  rm -rf "$headers_dir"
  mkdir -p "$headers_dir"
  dpkg-deb -x "$work"/libonnxruntime-dev_*.deb "$headers_dir"
  rm -f "$headers_dir"/usr/lib/*/libonnxruntime.so  # a dangling link to Debian's library; the wheel's is used
  test -f "$header"
  echo "install_deps.sh: ONNX Runtime headers $(dpkg-deb -f "$work"/libonnxruntime-dev_*.deb Version) in $headers_dir" >&2
fi
