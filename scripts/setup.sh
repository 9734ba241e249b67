# Sourced by demo.sh and test.sh: make .venv with connectofly installed, check headless GL.
# Idempotent: reinstalls only when pyproject.toml changes.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

find_python() {
  for candidate in "${PYTHON:-}" python3.12 "$HOME/.pyenv/versions/3.12.1/bin/python" python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "connectofly needs Python 3.12 (set PYTHON=/path/to/python3.12, or 'pyenv install 3.12')" >&2
  return 1
}

if [ ! -x .venv/bin/python ]; then
  PY="$(find_python)"
  echo "[setup] creating .venv with $PY"
  "$PY" -m venv .venv
fi
STAMP=.venv/.connectofly-installed
WANT="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  echo "[setup] installing connectofly and its dependencies into .venv"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[test]"
  echo "$WANT" > "$STAMP"
fi

# Headless OpenGL for MuJoCo's renderer: EGL (Mesa) or OSMesa.
if ! .venv/bin/python -c 'import sys; from connectofly.videos.gl import headless_backend; sys.exit(headless_backend() is None)'; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[setup] installing EGL (libegl1 libgl1-mesa-dri) for headless rendering"
    apt-get update -qq && apt-get install -y -qq libegl1 libgl1-mesa-dri >/dev/null
  else
    echo "[setup] no EGL/OSMesa found: run 'sudo apt-get install libegl1 libgl1-mesa-dri' (or libosmesa6)" >&2
    exit 1
  fi
fi
export MUJOCO_GL="${MUJOCO_GL:-$(.venv/bin/python -c 'from connectofly.videos.gl import headless_backend; print(headless_backend())')}"

# Connectome tables: a local copy when one sits beside the checkout (development, CI).
if [ -z "${CONNECTOFLY_DATA_DIR:-}" ] && [ -d "$ROOT/../shared/data/connectomes" ]; then
  export CONNECTOFLY_DATA_DIR="$ROOT/../shared/data/connectomes"
fi
export PATH="$ROOT/.venv/bin:$PATH"
