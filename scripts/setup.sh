#!/usr/bin/env bash
# Create or reuse the project's environment in .venv at the repository root.
#
# Idempotent: a complete .venv (stamped with the hash of pyproject.toml and
# constraints.txt) is reused in a second; otherwise it is (re)built. The
# first build downloads ~4 GB (CUDA build of torch: fairseq2n refuses
# CPU-only torch) and takes ~5 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
stamp=.venv/.embopt-setup
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x .venv/bin/embopt-tui ]; then
    echo "setup: .venv is complete"
    exit 0
fi

echo "setup: building .venv (first time: ~4 GB download, ~5 min)"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet --progress-bar off -c constraints.txt -e ".[test]"

# fairseq2n dlopens libsndfile.so.1; without the system package, use the copy
# that the soundfile wheel bundles.
if ! ldconfig -p 2>/dev/null | grep -q 'libsndfile\.so\.1'; then
    bundled=$(ls .venv/lib/python3*/site-packages/_soundfile_data/libsndfile*.so 2>/dev/null | head -n 1)
    if [ -n "$bundled" ]; then
        ln -sfn "${bundled#.venv/lib/}" .venv/lib/libsndfile.so.1
    elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get install -y -q libsndfile1 >/dev/null
    else
        echo "setup: libsndfile.so.1 is missing: install libsndfile1" >&2
        exit 1
    fi
fi

.venv/bin/python -c "import fairseq2n, engine, embopt_tui" >/dev/null
echo "$want" > "$stamp"
echo "setup: done (.venv/bin/embopt-tui)"
