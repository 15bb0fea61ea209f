# syntax=docker/dockerfile:1
# Farol's image: the compiled build (dist/) with production dependencies only — chDB (the embedded
# ClickHouse engine, linux-x64 glibc) and the uWebSockets.js binary included — run as a non-root
# user, the data dir a volume. One image for every process kind: the command picks it
# (`start` by default; `collector`, `processor`, `api`, `migrate`, `demo`, the admin commands).
#
#   docker build -t farol .
#   docker run -p 8080:8080 -v farol-data:/data farol                 # all-in-one, embedded engine
#   docker run farol collector                                         # one part (see deploy/compose.yaml)
#
# Debian 12 (bookworm): glibc ≥ 2.36, which chDB's library needs (README "Requirements").

FROM node:20-bookworm-slim AS build
WORKDIR /app
# The README's set-up commands, in a checkout without node_modules, dist/ or data (.dockerignore):
# install everything, compile to dist/ (tsc needs the dev dependencies), then drop those.
COPY . .
RUN npm ci && npm run build && npm prune --omit=dev
# The data dir, owned by the runtime user (uid 1000, `node` in the base image), private to it.
RUN mkdir -p /data && chown 1000:1000 /data && chmod 0700 /data

FROM node:20-bookworm-slim
# UV_THREADPOOL_SIZE: Node's file and chDB thread pool (libuv reads it when Node starts, so it is
# set here, not by Farol). 8 lets the embedded engine run 4 statements at once and still keeps
# threads free for the hub's appends and fdatasync (README "Configuration").
ENV NODE_ENV=production \
    UV_THREADPOOL_SIZE=8 \
    FAROL_HOST=0.0.0.0 \
    FAROL_PORT=8080 \
    FAROL_DATA_DIR=/data
WORKDIR /app
# Owned by root, read-only to the service user: cli/farol.js finds dist/ built from these very
# sources (scripts/build.js's fingerprint) and never needs to rebuild.
COPY --from=build /app /app
COPY --from=build /data /data
USER 1000:1000
# Salts, the local hub log, the collector's spool, the processor's state and the embedded engine's
# data: keep it on a volume (one per container; never shared by two processes).
VOLUME ["/data"]
EXPOSE 8080
# Liveness: /healthz on the public port (the collector's and the API's). Plain HTTP: with
# TLS on (FAROL_TLS_*), point the orchestrator's own probe at it instead.
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.FAROL_PORT || 8080) + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# SIGTERM drains (stop accepting, flush, checkpoint): node is PID 1 and handles it itself.
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "cli/farol.js"]
CMD ["start"]
