#!/bin/sh
# Build the hub's wheel from this checkout and install it, with the pinned dependencies of
# constraints.txt, into a new virtual environment. The container image runs exactly this, and so
# does tests/test_deploy.py, so what the image installs is what the tests prove.
#
#   deploy/install.sh /opt/abandonment-hub       # then /opt/abandonment-hub/bin/hub --help
set -eu
venv=${1:?usage: deploy/install.sh VENV_DIR}
src=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
wheels=$(mktemp -d)
trap 'rm -rf "$wheels"' EXIT
"$python" -m venv "$venv"
pip="$venv/bin/python -m pip --disable-pip-version-check --quiet --no-input"
$pip install --upgrade pip
$pip wheel --no-deps --wheel-dir "$wheels" "$src"
$pip install -c "$src/constraints.txt" "$wheels"/*.whl
