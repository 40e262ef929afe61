#!/usr/bin/env bash
# Builds the agent-client environments (Python 3.7 and 3.8, the Python of the CARLA evaluators) in
# .venv-py37/ and .venv-py38/: numpy, carla 0.9.15, pyzmq and PyYAML only (the client's
# dependencies); the tests run the agent client in them as subprocesses.
# A stamp file holding the requirement list keeps a built environment between runs.
# Interpreters: pyenv's 3.7.16 and 3.8.18 ($PYENV_ROOT, default ~/.pyenv).
set -euo pipefail
cd "$(dirname "$0")/.."
PYENV_ROOT="${PYENV_ROOT:-$HOME/.pyenv}"
REQUIREMENTS="numpy carla==0.9.15 pyzmq pyyaml"

build() {  # build <folder> <interpreter>
    local folder="$1" python="$2"
    local stamp="$folder/.requirements"
    if [ -x "$folder/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$REQUIREMENTS" ]; then
        echo "$folder: up to date"
        return
    fi
    if [ ! -x "$python" ]; then
        echo "$folder: interpreter $python not found (install it with pyenv)" >&2
        return 1
    fi
    rm -rf "$folder"
    "$python" -m venv "$folder"
    "$folder/bin/python" -m pip install --quiet --upgrade pip
    # shellcheck disable=SC2086
    "$folder/bin/python" -m pip install --quiet --only-binary=:all: $REQUIREMENTS
    echo "$REQUIREMENTS" > "$stamp"
    echo "$folder: built with $("$folder/bin/python" --version)"
}

build .venv-py37 "$PYENV_ROOT/versions/3.7.16/bin/python"
build .venv-py38 "$PYENV_ROOT/versions/3.8.18/bin/python"
