#!/usr/bin/env bash
# MLServer from PyPI in a virtualenv of its own, for `python -m bench.http` (the peer that
# the gateway is measured against). MLServer pins its own dependencies (FastAPI, pydantic,
# its own uvicorn), so it never goes into the project's .venv. Created when missing,
# reused when present; prints the venv's path last. MLSERVER_VENV overrides the place.
#   mlserver + mlserver-sklearn: the server and the scikit-learn runtime the issue names
#   onnxruntime + tokenizers:    bench/mlserver_runtimes.py runs maas's own ONNX files
#   uvloop<0.22:                 MLServer 1.7's parallel workers call asyncio.get_event_loop()
#                                before setting a loop, which uvloop 0.22+ refuses
set -euo pipefail

venv=${MLSERVER_VENV:-$HOME/.cache/maas/mlserver-venv}
python=${MLSERVER_PYTHON:-python3}
packages=(mlserver mlserver-sklearn onnxruntime tokenizers 'uvloop<0.22')

if [ ! -x "$venv/bin/mlserver" ] || [ ! -f "$venv/.complete" ]; then
    echo "building MLServer's virtualenv in $venv" >&2
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >&2
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "${packages[@]}" >&2
    touch "$venv/.complete"
fi
echo "$venv"
