# syntax=docker/dockerfile:1
#
# tally: build the release binary, then run it on a slim Debian with no toolchain.
#
#   docker build -t tally .
#   docker run --rm -p 8080:8080 -v tally-data:/data -e TALLY_JWT_SECRET=... tally
#
# The image serves on 0.0.0.0:8080 with its SQLite database in the /data volume and
# runs migrations at start (TALLY_MIGRATE=false turns that off; `docker run ... tally
# migrate` runs them alone). Point TALLY_DATABASE_URL at postgres://... for production
# (docs/production.md). The key may come from a mounted secret: TALLY_JWT_SECRET_FILE.
# An online SQLite backup: `docker exec CONTAINER tally backup /data/backup.db`.

# Same Debian release in both stages, so the binary finds the glibc it was linked with.
# Versioned bases (a rebuild gets the same toolchain and Debian point release); for a
# byte-identical rebuild pin them by digest too: --build-arg RUST_IMAGE=rust:1.95.0-bookworm@sha256:…
ARG RUST_IMAGE=rust:1.95.0-bookworm
ARG RUNTIME_IMAGE=debian:12.12-slim

FROM ${RUST_IMAGE} AS builder
WORKDIR /src
COPY . .
# The registry and target caches persist between builds (BuildKit), so a change to the
# sources recompiles tally only. The target dir is a cache mount, hence the copy out.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p tally \
    && install -m 0755 target/release/tally /usr/local/bin/tally

FROM ${RUNTIME_IMAGE} AS runtime
LABEL org.opencontainers.image.title="tally" \
      org.opencontainers.image.description="Comment-and-rating moderation service" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0" \
      org.opencontainers.image.documentation="docs/production.md" \
      org.opencontainers.image.version="0.1.0"
# ca-certificates: TLS to a managed PostgreSQL. SQLite is compiled into the binary.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 tally \
    && useradd --system --uid 10001 --gid tally --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin tally \
    && mkdir -p /data \
    && chown tally:tally /data
COPY --from=builder /usr/local/bin/tally /usr/local/bin/tally

ENV TALLY_DATABASE_URL="sqlite:///data/tally.db?mode=rwc" \
    TALLY_BIND="0.0.0.0:8080"
# A .env file in the working directory is read too (the environment wins).
WORKDIR /data
VOLUME ["/data"]
# The tally user and group created above (numeric, so the runtime need not resolve names).
USER 10001:10001
EXPOSE 8080
# `tally healthcheck` asks GET /readyz on TALLY_BIND (no curl needed): healthy once the
# database answers and is migrated. Orchestrators may probe /healthz (liveness) and
# /readyz (readiness) over HTTP instead.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/tally", "healthcheck", "--timeout", "3"]
# SIGTERM lets in-flight requests finish, up to 30 seconds. docker stop waits only 10 s
# before SIGKILL: give it more, e.g. `docker run --stop-timeout 35`, compose
# `stop_grace_period: 35s`, Kubernetes `terminationGracePeriodSeconds: 35`.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/tally"]
CMD ["serve"]
