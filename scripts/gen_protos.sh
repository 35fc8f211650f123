#!/usr/bin/env bash
# Regenerates gen/ from protos/. Old output is deleted first so a removed
# .proto never leaves a stale module behind.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-.venv/bin/python}"
# protoc finds the mypy-protobuf plugins (protoc-gen-mypy*) on PATH, beside python.
export PATH="$(cd "$(dirname "$python")" && pwd):$PATH"
rm -rf gen
mkdir -p gen/warmpath/v1
well_known="$("$python" -c 'import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')"
"$python" -m grpc_tools.protoc \
  -I protos -I "$well_known" \
  --python_out=gen --grpc_python_out=gen \
  --mypy_out=gen --mypy_grpc_out=gen \
  protos/warmpath/v1/*.proto
touch gen/warmpath/__init__.py gen/warmpath/v1/__init__.py gen/warmpath/py.typed
echo "generated $(ls gen/warmpath/v1/*.py | wc -l) modules in gen/warmpath/v1"
