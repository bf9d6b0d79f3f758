#!/usr/bin/env bash
# Create (or reuse) the virtualenv used by tests/python.
#
#   scripts/python-env.sh            # venv at <repo>/.venv
#   UINFO_VENV=/some/dir scripts/python-env.sh
#
# Idempotent: the packages of scripts/requirements-test.txt are (re)installed only
# when the hash of that file differs from the stamp recorded inside the venv.
# Prints the venv's python path on success.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${UINFO_VENV:-$root/.venv}"
reqs="$root/scripts/requirements-test.txt"
stamp="$venv/.uinfo-requirements.sha256"
python="${PYTHON:-python3}"

want="$(sha256sum "$reqs" | cut -d' ' -f1)"

if [[ ! -x "$venv/bin/python" ]]; then
    "$python" -m venv "$venv"
fi

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "$venv/bin/python"
    exit 0
fi

rm -f "$stamp"
"$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$reqs"
echo "$want" > "$stamp"
echo "$venv/bin/python"
