#!/usr/bin/env bash
# Installs the Debian 12 packages dx needs to build, test and benchmark, if any are missing.
# Checks first, so a second run does nothing. Run as root, or it prints the apt-get command.
#   DX_DEPS_EXTRA="pkg ..."  adds packages (used by test tools of later components).
set -euo pipefail

packages=(
  build-essential cmake make
  libboost-dev libboost-serialization-dev
  libeigen3-dev
  libtbb-dev
  libfmt-dev
  catch2
  libbenchmark-dev
  libssl-dev
  libsqlite3-dev
  nlohmann-json3-dev
  ccache
  # Test tools of the observability integration tests (tests/integration, ctest -L integration):
  # Python 3 runs them, promtool and Prometheus (package prometheus) read /metrics, headless
  # Chromium renders the dashboard; a font so that its screenshot has readable text.
  python3
  prometheus
  chromium
  fonts-dejavu-core
  # The browser test of the dashboard (tests/browser, ctest -L browser): Node.js runs
  # puppeteer-core (from the npm registry, below), which drives Debian's Chromium. npm too,
  # unless the nodejs installed brings its own (NodeSource's does, and conflicts with Debian's).
  nodejs
  # A single-node Slurm for the srun test (tests/integration/slurm_job.sh, ctest -L integration):
  # the daemons and munge, configured by the test in a temporary folder.
  slurm-wlm
  munge
  # The MPI transport (transport_kind::mpi) and its tests under mpirun: Open MPI.
  libopenmpi-dev
  openmpi-bin
  # A journal in Redis and a standby head (dx serve --journal redis://... --standby): hiredis, and
  # the server its integration test starts.
  libhiredis-dev
  redis-server
  # The dataframe benchmark's peers (benchmarks/dataframe/peer.py, not the build or the tests):
  # pandas and dask.dataframe, run by Debian's /usr/bin/python3.
  python3-pandas
  python3-dask
)
# shellcheck disable=SC2206
packages+=(${DX_DEPS_EXTRA:-})

# puppeteer-core, at the exact version tests/browser/package-lock.json pins, into
# tests/browser/node_modules: never a browser of its own (PUPPETEER_SKIP_DOWNLOAD, --ignore-scripts).
# Skipped with a message when npm is missing or the registry cannot be reached (the test then skips).
install_browser_test_modules() {
  local dir
  dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tests/browser"
  local want
  want="$(sed -n 's/.*"puppeteer-core": *"\([0-9][0-9.]*\)".*/\1/p' "$dir/package.json" | head -n 1)"
  if [ -f "$dir/node_modules/puppeteer-core/package.json" ] &&
     grep -q "\"version\": *\"$want\"" "$dir/node_modules/puppeteer-core/package.json"; then
    return 0
  fi
  if ! command -v npm >/dev/null 2>&1; then
    echo "dx: npm is missing: the browser test (ctest -L browser) will be skipped" >&2
    return 0
  fi
  echo "dx: installing puppeteer-core $want into $dir/node_modules"
  if ! (cd "$dir" && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --ignore-scripts --no-audit --no-fund); then
    echo "dx: npm ci failed: the browser test (ctest -L browser) will be skipped" >&2
  fi
}

missing=()
for p in "${packages[@]}"; do
  # dpkg-query prints "install ok installed" only for a fully installed package.
  if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]; then
    missing+=("$p")
  fi
done

if ! command -v npm >/dev/null 2>&1 && [ "$(dpkg-query -W -f='${Status}' npm 2>/dev/null)" != "install ok installed" ]; then
  missing+=(npm)
fi

if [ ${#missing[@]} -eq 0 ]; then
  install_browser_test_modules
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "dx: missing Debian packages: ${missing[*]}" >&2
  echo "dx: install them as root with:" >&2
  echo "    apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi

echo "dx: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# A fresh machine has no package lists: refresh them when apt knows no candidate for a package.
needs_update=0
for p in "${missing[@]}"; do
  if ! apt-cache policy "$p" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    needs_update=1
    break
  fi
done
if [ "$needs_update" -eq 1 ]; then
  apt-get update
fi
# A list can also be stale (a version since removed from the mirror): refresh once and retry.
if ! apt-get install -y --no-install-recommends "${missing[@]}"; then
  apt-get update
  apt-get install -y --no-install-recommends "${missing[@]}"
fi
install_browser_test_modules
