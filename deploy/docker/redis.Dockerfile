# Debian bookworm's redis-server (7.0, BSD licensed, with Debian's security fixes) on the
# local debootstrap base: the bundled Redis for clusters that cannot pull
# docker.io/valkey/valkey (the test cluster, an offline kind). Built by
# deploy/docker/build-images.sh with --network host (apt over Debian's mirror).
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN echo "deb http://deb.debian.org/debian-security bookworm-security main" \
        > /etc/apt/sources.list.d/security.list \
    && apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server \
    && apt-get clean && rm -rf /var/lib/apt/lists/* \
    && redis-server --version \
    && mkdir -p /data && chown 10001:10001 /data
USER 10001:10001
WORKDIR /data
EXPOSE 6379
ENTRYPOINT ["redis-server"]
