# Sourced by scripts/run and scripts/test: a virtual environment with the project
# installed from the hashed lock file, made on first use and refreshed when it or
# pyproject.toml changes.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
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
