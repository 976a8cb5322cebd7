# Plaza server image: `docker build -t plaza .` (docker-compose.yml builds it too).
#
# Two stages: a Rust toolchain builds the release binary; the runtime image is slim
# Debian with that binary, the web client, and curl for the health check. It runs as
# an unprivileged user: Plaza needs no privileged port (8080/tcp, 50000/udp).

# The builder's Debian release must match the runtime's (glibc). 1.95 is the
# toolchain the project is built and tested with. scripts/compose-check.sh replaces it
# (--build-arg PLAZA_BUILDER=...) with a bookworm image that already holds the plaza
# binary it built on the host at /out/plaza, so Plaza is not compiled a second time;
# everything from the runtime stage on is the same either way.
ARG PLAZA_BUILDER=rust:1.95-slim-bookworm
# hadolint ignore=DL3006
FROM ${PLAZA_BUILDER} AS build
WORKDIR /src
# The whole (filtered, see .dockerignore) tree: Cargo reads every workspace member's
# manifest and every target named in them, so copying only src/ is not enough.
COPY . .
# --locked: exactly the dependency versions the tests ran with. `-p plaza --bin plaza`
# compiles the server and its own dependencies only: the client, the load and soak
# tools and their plotting, progress bars and histograms are other crates
# (`cargo tree -p plaza -e normal` shows what this builds). `--profile dist`: fat LTO,
# one codegen unit (Cargo.toml says why).
RUN if [ -x /out/plaza ]; then echo "using the prebuilt /out/plaza of the builder image"; \
    else cargo build --profile dist --locked -p plaza --bin plaza \
      && install -D -m 0755 target/dist/plaza /out/plaza; fi

FROM debian:bookworm-slim
# curl for the HEALTHCHECK (plain HTTP, so no CA bundle). Versions are not pinned:
# security updates of the release should apply on rebuild.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 plaza \
 && useradd --uid 10001 --gid 10001 --no-create-home \
            --home-dir /nonexistent --shell /usr/sbin/nologin plaza
COPY --from=build /out/plaza /usr/local/bin/plaza
COPY web /srv/plaza/web
WORKDIR /srv/plaza

# Defaults for a container; every one can be overridden with -e / `environment:`.
# In a container the UDP mux is the sensible default: one UDP port to publish instead
# of a range Docker handles badly. Behind Docker's NAT, also set PLAZA_NAT_1TO1_IPS to
# the public IP browsers reach (see README, "Deploy with docker-compose").
ENV PLAZA_LISTEN=0.0.0.0:8080 \
    PLAZA_WEB_ROOT=/srv/plaza/web \
    PLAZA_UDP_PORT=50000
EXPOSE 8080/tcp 50000/udp

# Numeric, so orchestrators can verify runAsNonRoot without reading /etc/passwd.
USER 10001:10001

# /healthz answers 200 with JSON while the server runs. The port follows the default
# PLAZA_LISTEN above; change both together.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8080/healthz"]

# Plaza handles SIGTERM (docker stop): it tells every client, closes the rooms, exits.
ENTRYPOINT ["/usr/local/bin/plaza"]
