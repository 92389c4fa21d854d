# Sourced by scripts/run and scripts/test: a virtual environment with the project
# installed from the hashed lock file, made on first use and refreshed when it or
# pyproject.toml changes; and, for the test command, the browser the console's tests drive.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
# Playwright drives Debian's chromium (QCARE_CHROMIUM); it never downloads a browser of its own.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
export QCARE_CHROMIUM="${QCARE_CHROMIUM:-/usr/bin/chromium}"
# dcmtk's findscu, by path: pynetdicom puts a findscu of its own in .venv/bin
export QCARE_FINDSCU="${QCARE_FINDSCU:-/usr/bin/findscu}"
if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv with $($PYTHON --version)" >&2
  "$PYTHON" -m venv .venv
fi
if [ ! -f .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ] \
   || [ requirements-test.lock -nt .venv/.installed ]; then
  echo "bootstrap: installing qcare-ingest and its test tools into .venv" >&2
  # exactly the locked versions, each file checked against its hash (scripts/lock makes
  # the lock); then the project itself, with nothing more resolved or downloaded
  .venv/bin/python -m pip install -q --disable-pip-version-check --require-hashes \
    -r requirements-test.lock
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps \
    --no-build-isolation -e .
  touch .venv/.installed
fi
export PATH="$ROOT/.venv/bin:$PATH"

# Debian's chromium for tests/browser and dcmtk's findscu for the worklist tests (a DICOM
# client nobody here wrote), installed with apt-get when missing: as root, else with sudo
# when it needs no password, else stop and say what to run. scripts/run (the service
# alone) needs neither and skips this.
bootstrap_chromium() {
  local packages=(chromium fonts-liberation fonts-dejavu-core dcmtk)
  [ -x "$QCARE_CHROMIUM" ] && [ -x "$QCARE_FINDSCU" ] && return 0
  local as=()
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      as=(sudo -n)
    else
      echo "bootstrap: $QCARE_CHROMIUM or $QCARE_FINDSCU is missing and this user cannot install" \
           "them; run: sudo apt-get install -y ${packages[*]}" \
           "(or set QCARE_CHROMIUM to a chromium binary)" >&2
      return 1
    fi
  fi
  echo "bootstrap: installing Debian's chromium and dcmtk for the tests (apt-get)" >&2
  "${as[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -qq update >/dev/null
  "${as[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -qq install -y \
    --no-install-recommends "${packages[@]}" >/dev/null
  if [ ! -x "$QCARE_CHROMIUM" ]; then
    echo "bootstrap: apt-get installed chromium, but $QCARE_CHROMIUM is still missing" >&2
    return 1
  fi
  [ -x "$QCARE_FINDSCU" ] || { echo "bootstrap: dcmtk gave no $QCARE_FINDSCU" >&2; return 1; }
}
if [ "$(basename -- "$0")" != run ]; then
  bootstrap_chromium
fi
