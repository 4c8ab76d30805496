#!/usr/bin/env bash
# Install everything the pipeline and its tests need into ./.venv (idempotent).
#  - Fashion-MNIST from Debian's dataset-fashion-mnist package when apt-get is available
#    and we are root (no download needed then); elsewhere torchvision downloads it.
#  - Python requirements (ranges, requirements-dev.txt) and this package, editable.
set -euo pipefail
cd "$(dirname "$0")"

if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null \
    && [ "$(id -u)" = 0 ]; then
  echo "setup: installing dataset-fashion-mnist (Debian package)"
  { apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null; } \
    || echo "setup: apt-get could not install dataset-fashion-mnist; torchvision will download it"
fi

# pip, quietly: its output is shown only when it fails (minus the local-index noise).
pip_install() {
  local log
  log=$(mktemp)
  if ! .venv/bin/python -m pip install -q "$@" >"$log" 2>&1; then
    grep -v "^WARNING: Location" "$log" >&2 || true
    rm -f "$log"
    echo "setup: pip install $* failed" >&2
    exit 1
  fi
  rm -f "$log"
}

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
pip_install --upgrade pip
pip_install -r requirements-dev.txt
pip_install --no-deps -e .
.venv/bin/python -c "import torch, torchvision, snakemake; print('setup: torch', torch.__version__, '| torchvision', torchvision.__version__, '| snakemake', snakemake.__version__)"
