#!/usr/bin/env bash
# Build langscale's images with the classic Docker builder, where no image registry can be
# pulled from (docs/images.md):
#
#   deploy/docker/build-images.sh build    # base, wheelhouse, gateway, worker, local redis
#   deploy/docker/build-images.sh list     # the image references `build` tags, one a line
#   deploy/docker/build-images.sh save     # docker save them all to $CACHE/images/langscale-images.tar
#
# Needs a Docker Engine that answers (deploy/docker/with-docker.sh starts one) and, for the
# first build on a machine, root and debootstrap. Slow outputs are cached under
# $CACHE/images/ (outside the clone, so a fresh clone reuses them):
#   base-<recipe>.tar            debootstrap rootfs of Debian bookworm with its Python 3.11
#   wheelhouse/<lock hash>/      every locked dependency as a hash-checked wheel
#
# Settings (environment): CACHE, IMAGE_REGISTRY (ghcr.io/langscale), IMAGE_TAG (the
# project version), BASE_IMAGE (skip the local base: use this one, e.g. a pullable
# python:3.11.14-slim-bookworm), DEBIAN_MIRROR.
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD
CACHE="${CACHE:-$HOME/.cache/langscale}"
IMAGES_CACHE="$CACHE/images"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
DEBIAN_SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
VERSION=$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
IMAGE_REGISTRY="${IMAGE_REGISTRY:-ghcr.io/langscale}"
IMAGE_TAG="${IMAGE_TAG:-$VERSION}"
GATEWAY_IMAGE="$IMAGE_REGISTRY/langscale-gateway:$IMAGE_TAG"
WORKER_IMAGE="$IMAGE_REGISTRY/langscale-worker:$IMAGE_TAG"
# Debian bookworm's redis-server (7.0, BSD licensed, security-patched by Debian), for the
# bundled Redis where docker.io/valkey/valkey cannot be pulled (examples/local-images-values.yaml).
REDIS_IMAGE="localhost/langscale-redis:7.0-bookworm"
# Bump when the base recipe below changes: the cached rootfs is then rebuilt.
BASE_RECIPE="bookworm-minbase-python3-v1"
LOCAL_BASE_IMAGE="localhost/langscale-base:$BASE_RECIPE"
export DOCKER_BUILDKIT=0   # Debian's docker.io has no buildx; the classic builder works

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

list() {
    printf '%s\n' "$GATEWAY_IMAGE" "$WORKER_IMAGE" "$REDIS_IMAGE"
}

# --- base image: debootstrap of Debian bookworm with its own Python 3.11 -------------------
base_image() {
    if docker image inspect "$LOCAL_BASE_IMAGE" >/dev/null 2>&1; then
        return
    fi
    local tarball="$IMAGES_CACHE/base-$BASE_RECIPE.tar"
    if [ ! -s "$tarball" ]; then
        if ! command -v debootstrap >/dev/null 2>&1; then
            echo "error: the local base image needs debootstrap: apt-get install debootstrap" \
                "(or set BASE_IMAGE to an image you can pull, e.g. python:3.11.14-slim-bookworm)" >&2
            exit 2
        fi
        if [ "$(id -u)" != 0 ]; then
            echo "error: debootstrap needs root (or set BASE_IMAGE to a pullable image)" >&2
            exit 2
        fi
        local rootfs
        rootfs=$(mktemp -d "$IMAGES_CACHE/rootfs.XXXXXX")
        log "debootstrap bookworm (minbase + python3, python3-venv) into $rootfs"
        nice -n 10 debootstrap --variant=minbase --include=python3,python3-venv \
            bookworm "$rootfs" "$DEBIAN_MIRROR" >"$IMAGES_CACHE/debootstrap.log" 2>&1 \
            || { tail -20 "$IMAGES_CACHE/debootstrap.log" >&2; rm -rf "$rootfs"; exit 2; }
        log "security updates in the rootfs"
        cat >"$rootfs/etc/apt/sources.list" <<SOURCES
deb $DEBIAN_MIRROR bookworm main
deb $DEBIAN_MIRROR bookworm-updates main
deb $DEBIAN_SECURITY_MIRROR bookworm-security main
SOURCES
        chroot "$rootfs" /bin/sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get upgrade -y -qq' \
            >>"$IMAGES_CACHE/debootstrap.log" 2>&1 \
            || { tail -20 "$IMAGES_CACHE/debootstrap.log" >&2; rm -rf "$rootfs"; exit 2; }
        chroot "$rootfs" apt-get clean
        rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/tmp/* \
            "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
        tar -C "$rootfs" --numeric-owner -cf "$tarball.tmp" .
        mv "$tarball.tmp" "$tarball"
        rm -rf "$rootfs"
    fi
    log "docker import $tarball as $LOCAL_BASE_IMAGE"
    docker import --change 'CMD ["python3"]' --change 'ENV LANG=C.UTF-8' \
        "$tarball" "$LOCAL_BASE_IMAGE" >/dev/null
}

# --- wheelhouse: the locked dependency set as wheels, downloaded on this host -------------
pip_cmd() {
    if [ -x "$ROOT/.tools/bin/pip" ]; then echo "$ROOT/.tools/bin/pip"; else echo "python3 -m pip"; fi
}

python_cmd() {
    if [ -x "$ROOT/.tools/bin/python" ]; then echo "$ROOT/.tools/bin/python"; else echo python3; fi
}

uv_cmd() {
    if [ -x "$ROOT/.tools/bin/uv" ]; then echo "$ROOT/.tools/bin/uv"; else echo uv; fi
}

wheelhouse() {
    # $1: the base image's Python version (markers such as python_full_version < '3.11.3'
    # must be evaluated for that interpreter, not this host's).
    local python_version=$1 uv pip key dir arch
    uv=$(uv_cmd)
    pip=$(pip_cmd)
    key=$( (cat uv.lock pyproject.toml; echo "$python_version") | sha256sum | cut -c1-16)
    dir="$IMAGES_CACHE/wheelhouse/$key"
    arch=$(uname -m)
    if [ ! -f "$dir/.complete" ]; then
        log "wheelhouse $dir (pip download of the locked set)"
        rm -rf "$dir"
        mkdir -p "$dir"
        # Start from the wheels of earlier wheelhouses (pip download skips a file already
        # there with the right hash), and keep only the newest few.
        find "$IMAGES_CACHE/wheelhouse" -mindepth 2 -maxdepth 2 -name '*.whl' \
            -exec cp -l -n {} "$dir/" \; 2>/dev/null || true
        # shellcheck disable=SC2012
        ls -1dt "$IMAGES_CACHE"/wheelhouse/*/ | tail -n +4 | xargs -r rm -rf
        for extra in gateway worker; do
            $uv export --frozen --no-default-groups --no-dev --extra "$extra" --no-emit-project \
                --format requirements-txt --quiet --output-file "$dir/all-$extra.txt"
            # Markers evaluated for the base's Python (pip download would use this host's).
            $(python_cmd) deploy/docker/select-requirements.py "$python_version" \
                <"$dir/all-$extra.txt" >"$dir/requirements-$extra.txt"
        done
        # Wheels for the base's CPython on glibc Linux of this machine's architecture, whatever
        # the host's own Python is.
        local platforms=(--platform "manylinux2014_$arch")
        for minor in $(seq 17 36); do platforms+=(--platform "manylinux_2_${minor}_$arch"); done
        # One download of both extras' sets (pip looks every package up in the index).
        $(python_cmd) deploy/docker/select-requirements.py --union \
            "$dir/requirements-gateway.txt" "$dir/requirements-worker.txt" >"$dir/download.txt"
        nice -n 10 $pip download --quiet --no-deps --require-hashes --only-binary=:all: \
            --python-version "$python_version" --implementation cp "${platforms[@]}" \
            --dest "$dir" -r "$dir/download.txt"
        touch "$dir/.complete"
    fi
    echo "$dir"
}

# --- the service images -------------------------------------------------------------------
build() {
    mkdir -p "$IMAGES_CACHE"
    local started=$SECONDS base python_version
    base="${BASE_IMAGE:-}"
    if [ -z "$base" ]; then
        base_image
        base="$LOCAL_BASE_IMAGE"
    fi
    python_version=$(docker run --rm --network none --entrypoint python3 "$base" \
        -c 'import platform; print(platform.python_version())')
    log "base image: $base (Python $python_version)"
    local wheels
    wheels=$(wheelhouse "$python_version")

    # The wheelhouse and a fresh project wheel go into the build context only for this
    # build: a plain `docker build` later must not install stale code from them.
    CONTEXT_WHEELS="$ROOT/deploy/docker/wheelhouse"
    CONTEXT_PROJECT="$ROOT/deploy/docker/project-wheel"
    clean_context() {
        find "$CONTEXT_WHEELS" "$CONTEXT_PROJECT" -mindepth 1 ! -name README.md -delete
    }
    trap clean_context EXIT
    clean_context
    cp -l "$wheels"/*.whl "$wheels"/requirements-*.txt "$CONTEXT_WHEELS/" 2>/dev/null \
        || cp "$wheels"/*.whl "$wheels"/requirements-*.txt "$CONTEXT_WHEELS/"
    # A wheel records its files' mtimes: pin them, so an unchanged tree gives the same wheel
    # and the build cache holds.
    SOURCE_DATE_EPOCH=315532800 $(uv_cmd) build --wheel --quiet --out-dir "$CONTEXT_PROJECT" \
        >/dev/null

    for target in gateway worker; do
        local image=$GATEWAY_IMAGE
        [ "$target" = worker ] && image=$WORKER_IMAGE
        log "docker build --target $target -t $image"
        nice -n 10 docker build --quiet --network none --target "$target" \
            --build-arg "BASE_IMAGE=$base" --tag "$image" . >/dev/null
    done
    clean_context
    trap - EXIT

    if ! docker image inspect "$REDIS_IMAGE" >/dev/null 2>&1; then
        log "docker build $REDIS_IMAGE (Debian's redis-server on the local base)"
        nice -n 10 docker build --quiet --network host --build-arg "BASE_IMAGE=$LOCAL_BASE_IMAGE" \
            --tag "$REDIS_IMAGE" -f deploy/docker/redis.Dockerfile deploy/docker >/dev/null
    fi
    log "built in $((SECONDS - started)) s:"
    for image in $(list); do
        docker image inspect --format '{{.Size}}' "$image" \
            | awk -v name="$image" '{printf "  %-50s %4.0f MB\n", name, $1 / 1e6}' >&2
    done
}

save() {
    mkdir -p "$IMAGES_CACHE"
    log "docker save -> $IMAGES_CACHE/langscale-images.tar"
    # shellcheck disable=SC2046
    docker save -o "$IMAGES_CACHE/langscale-images.tar.tmp" $(list)
    chmod 644 "$IMAGES_CACHE/langscale-images.tar.tmp"
    mv "$IMAGES_CACHE/langscale-images.tar.tmp" "$IMAGES_CACHE/langscale-images.tar"
    echo "$IMAGES_CACHE/langscale-images.tar"
}

case "${1:-build}" in
    build) build ;;
    list) list ;;
    save) save ;;
    *) echo "usage: $0 build|list|save" >&2; exit 2 ;;
esac
