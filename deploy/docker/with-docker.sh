#!/usr/bin/env bash
# Run a command with a Docker Engine that answers: the one already running (DOCKER_HOST or
# the default socket), else a dockerd started here and stopped when the command ends.
#
#   deploy/docker/with-docker.sh COMMAND [ARGS...]
#
# The dockerd started here has no default bridge (--bridge=none: nothing named docker0 that
# could collide with another engineer's engine); builds run with --network none or host, and
# the container tests make their own network. Its log: $CACHE/images/dockerd.log.
set -euo pipefail

CACHE="${CACHE:-$HOME/.cache/langscale}"

install_hint() {
    cat >&2 <<'MSG'
langscale images need a Docker Engine (dockerd) and its client:
  Debian/Ubuntu:  apt-get install docker.io      (then: dockerd &, or systemctl start docker)
  elsewhere:      https://docs.docker.com/engine/install/
The local base image is built with debootstrap (apt-get install debootstrap) and runs as root.
MSG
}

if ! command -v docker >/dev/null 2>&1; then
    echo "error: no docker client on PATH" >&2
    install_hint
    exit 2
fi
if docker info >/dev/null 2>&1; then
    exec "$@"
fi
if ! command -v dockerd >/dev/null 2>&1; then
    echo "error: no Docker Engine answers and dockerd is not installed" >&2
    install_hint
    exit 2
fi
if [ "$(id -u)" != 0 ]; then
    echo "error: no Docker Engine answers, and starting dockerd needs root:" \
        "start it (sudo systemctl start docker) or point DOCKER_HOST at one" >&2
    exit 2
fi

mkdir -p "$CACHE/images"
log="$CACHE/images/dockerd.log"
echo "starting dockerd (log: $log)" >&2
dockerd --bridge=none --log-level=warn >"$log" 2>&1 &
dockerd_pid=$!
stop_dockerd() {
    kill "$dockerd_pid" 2>/dev/null || true
    wait "$dockerd_pid" 2>/dev/null || true
}
trap stop_dockerd EXIT

deadline=$((SECONDS + 60))
until docker info >/dev/null 2>&1; do
    if ! kill -0 "$dockerd_pid" 2>/dev/null; then
        echo "error: dockerd exited; its log:" >&2
        tail -20 "$log" >&2
        exit 2
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
        echo "error: dockerd did not answer within 60 s; its log:" >&2
        tail -20 "$log" >&2
        exit 2
    fi
    sleep 0.2
done
"$@"
