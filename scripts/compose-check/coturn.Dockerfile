# A local stand-in for coturn/coturn:4.6, which scripts/compose-check.sh cannot pull (no
# image registry is reachable where it runs). It is built from the same Debian base and
# tagged coturn/coturn:4.6, so docker-compose.yml's coturn service runs unchanged on it.
#
# What matches the real image (github.com/coturn/coturn, docker/coturn/debian/Dockerfile
# at tag docker/4.6.3-r3): turnserver at /usr/bin/turnserver with CAP_NET_BIND_SERVICE
# (so it binds 443 as nobody), USER nobody:nogroup, VOLUME /var/lib/coturn owned by
# nobody, and its docker-entrypoint.sh (verbatim, next to this file) as ENTRYPOINT.
# What differs: coturn is Debian bookworm's package (4.6.1) instead of 4.6.3 built from
# source, and detect-external-ip (which needs dig and the internet) is left out: the
# compose file passes --external-ip itself.
FROM debian:bookworm-slim
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends coturn libcap2-bin \
 && setcap CAP_NET_BIND_SERVICE=+ep /usr/bin/turnserver \
 && apt-get purge -y --auto-remove libcap2-bin \
 && rm -rf /var/lib/apt/lists/* \
 && install -d -o nobody -g nogroup /var/lib/coturn /etc/coturn
COPY coturn-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
USER nobody:nogroup
EXPOSE 3478 3478/udp 5349 5349/udp
VOLUME ["/var/lib/coturn"]
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["--log-file=stdout", "--external-ip=$(detect-external-ip)"]
