# Sourced by the scripts: makes `uv` and a Python >= 3.12 available. A Python of the machine
# is used when there is one; otherwise uv provides its managed CPython 3.13 (downloaded once
# into uv's own folder). Only when that download is impossible does setup stop.
export PATH="$HOME/.local/bin:$PATH"
if ! uv --version >/dev/null 2>&1; then
  python3 -m pip install --quiet --user uv 2>/dev/null || python3 -m pip install --quiet uv
  hash -r
fi
# Nothing is downloaded behind the scripts' back: only the explicit install below may.
export UV_PYTHON_DOWNLOADS=never
if [ -z "${UV_PYTHON:-}" ]; then
  for candidate in python3.13 python3.12 python3 "$HOME"/.pyenv/versions/3.13*/bin/python3 "$HOME"/.pyenv/versions/3.12*/bin/python3; do
    if "$candidate" -c 'import sys; assert sys.version_info >= (3, 12)' >/dev/null 2>&1; then
      UV_PYTHON="$(command -v "$candidate" || echo "$candidate")"
      export UV_PYTHON
      break
    fi
  done
fi
if [ -z "${UV_PYTHON:-}" ]; then
  # uv's managed CPython 3.13: already installed, or installed now.
  if ! UV_PYTHON="$(uv python find --managed-python 3.13 2>/dev/null)"; then
    echo "No Python >= 3.12 on this machine: installing uv's managed CPython 3.13" >&2
    if UV_PYTHON_DOWNLOADS=automatic uv python install --quiet 3.13 >&2; then
      UV_PYTHON="$(uv python find --managed-python 3.13 2>/dev/null)" || UV_PYTHON=""
    else
      UV_PYTHON=""
    fi
  fi
  export UV_PYTHON
fi
if [ -z "${UV_PYTHON:-}" ]; then
  echo "chatkit-lambda needs Python 3.12 or newer (python3.13 recommended, as on Lambda)," >&2
  echo "and uv could not download its managed CPython 3.13 here" >&2
  return 1 2>/dev/null || exit 1
fi
