# syntax=docker/dockerfile:1
#
# tally: build the release binary, then run it on a slim Debian with no toolchain.
#
#   docker build -t tally .
#   docker run --rm -p 8080:8080 -v tally-data:/data -e TALLY_JWT_SECRET=... tally
#
# The image serves on 0.0.0.0:8080 with its SQLite database in the /data volume and
# runs migrations at start (TALLY_MIGRATE=false turns that off; `docker run ... tally
# migrate` runs them alone). Point TALLY_DATABASE_URL at postgres://... for production.

# Same Debian release in both stages, so the binary finds the glibc it was linked with.
FROM rust:1.95-bookworm AS builder
WORKDIR /src
COPY . .
# The registry and target caches persist between builds (BuildKit), so a change to the
# sources recompiles tally only. The target dir is a cache mount, hence the copy out.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p tally \
    && install -m 0755 target/release/tally /usr/local/bin/tally

FROM debian:bookworm-slim AS runtime
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
# No HEALTHCHECK: the slim image has no curl or wget. Let the orchestrator probe
# GET /healthz (liveness) and GET /readyz (readiness: the database answers).
# SIGTERM lets in-flight requests finish, up to 30 seconds (docker stop waits only 10 s
# before SIGKILL unless given --time / --stop-timeout).
ENTRYPOINT ["/usr/local/bin/tally"]
CMD ["serve"]
