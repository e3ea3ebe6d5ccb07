# Sourced by the scripts: makes `uv` and a Python >= 3.12 available without downloading one.
export UV_PYTHON_DOWNLOADS=never
export PATH="$HOME/.local/bin:$PATH"
if ! uv --version >/dev/null 2>&1; then
  python3 -m pip install --quiet --user uv 2>/dev/null || python3 -m pip install --quiet uv
  hash -r
fi
if [ -z "${UV_PYTHON:-}" ]; then
  for candidate in python3.13 python3.12 "$HOME"/.pyenv/versions/3.13*/bin/python3 "$HOME"/.pyenv/versions/3.12*/bin/python3; do
    if "$candidate" -c 'import sys; assert sys.version_info >= (3, 12)' >/dev/null 2>&1; then
      UV_PYTHON="$(command -v "$candidate" || echo "$candidate")"
      export UV_PYTHON
      break
    fi
  done
fi
if [ -z "${UV_PYTHON:-}" ]; then
  echo "chatkit-lambda needs Python 3.12 or newer (python3.13 recommended, as on Lambda)" >&2
  exit 1
fi
