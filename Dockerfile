# syntax=docker/dockerfile:1
#
# Lucid for a team: `lucid serve` (normally in Supabase mode) in a small runtime image.
# Build: docker compose build   (or: docker build -t lucid .)
# See README.md, "Running Lucid for a team", for the settings, the Docker socket and why the
# workspace directory is a bind mount.

ARG RUST_VERSION=1.95
ARG NODE_VERSION=20

# ---- 1. The web UI: static files that crates/lucid-server/build.rs embeds into the binary ----
FROM node:${NODE_VERSION}-bookworm-slim AS ui
WORKDIR /src/ui
COPY ui/package.json ui/package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY ui/ ./
RUN npm run build

# ---- 2. The `lucid` binary (release, locked dependencies, UI embedded) ----
FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
COPY --from=ui /src/ui/dist ui/dist
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p lucid-server \
    && install -m 0755 target/release/lucid /usr/local/bin/lucid

# ---- 3. Runtime: the binary, git (clones and pushes), CA certificates, tini as PID 1 ----
FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates git tini \
    && rm -rf /var/lib/apt/lists/*
# A fixed, unprivileged uid/gid (10001) that owns the data directory and, on the host, the
# workspace directory (sandboxes run as the same uid by default, see SANDBOX_USER). Docker
# access comes from the host's docker group, added at run time (compose: group_add DOCKER_GID).
RUN groupadd --gid 10001 lucid \
    && useradd --uid 10001 --gid 10001 --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin lucid \
    && mkdir -p /app/data /app/storage \
    && chown -R 10001:10001 /app
COPY --from=build /usr/local/bin/lucid /usr/local/bin/lucid
ENV HOME=/app \
    HOST=0.0.0.0 \
    PORT=8000 \
    LUCID_DATA_DIR=/app/data \
    WORKSPACE_BASE_PATH=/app/storage
WORKDIR /app
USER 10001:10001
EXPOSE 8000
# tini forwards SIGTERM to lucid, which stops the sessions and removes their sandboxes.
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/lucid"]
CMD ["serve"]
