# The realtime-server image `rtctl gen k8s` deploys: realtime-server as the entrypoint,
# rtctl beside it, run as an unprivileged numeric user (the pods set runAsNonRoot).
#
#   docker build -t registry.example.com/realtime:$(git rev-parse --short HEAD) .
#
# Not built in this repository's CI (its machines have no container runtime); the
# binaries it copies are the ones `cargo build --release` makes and the tests exercise.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# No debug info in the shipped binaries (the release profile keeps it for profiling).
ENV CARGO_PROFILE_RELEASE_DEBUG=0
RUN cargo build --release --locked --bin realtime-server --bin rtctl

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/realtime-server /src/target/release/rtctl /usr/local/bin/
# The pods' securityContext runs as 10001 with a read-only root filesystem: keep no state
# on disk (set DATABASE_URL to PostgreSQL; the embedded SQLite default is for one box).
USER 10001:10001
WORKDIR /tmp
ENV LISTEN_ADDR=0.0.0.0:3001 RT_ENV=production LOG_FORMAT=json
EXPOSE 3001
# SIGTERM starts the drain (readiness 503, DRAIN_DELAY, then SHUTDOWN_TIMEOUT).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/realtime-server"]
