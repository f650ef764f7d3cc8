#!/usr/bin/env bash
# Make a local stand-in for `python:3.11-slim` from Debian's packages, for machines that reach
# Debian's archive and PyPI but no container registry (this project's own machines among them):
#
#   sudo scripts/docker-local-base.sh                # makes chatbot-local-base:bookworm
#   docker build --network host --build-arg BASE_IMAGE=chatbot-local-base:bookworm -t chatbot .
#
# debootstrap (minbase) installs Debian bookworm with its Python 3.11, venv and CA certificates
# into a temporary folder; `docker import` turns that folder into an image. `python` is linked
# to `python3` (python-is-python3), as in the official image. The host's CA bundle replaces the
# image's, so `pip` in `docker build --network host` trusts whatever the host trusts (a proxy's
# CA included). Docs, man pages and apt's caches are left out.
#
# Idempotent: an existing image of that name is kept (pass --force to remake it), so CI on the
# same machine pays for debootstrap once. Needs root, debootstrap and a running Docker engine.
# Options and environment:
#   --force                 remake the image even if it exists
#   --tag NAME              image name (default: $CHATBOT_LOCAL_BASE or chatbot-local-base:bookworm)
#   --mirror URL            Debian mirror (default: $DEBIAN_MIRROR or http://deb.debian.org/debian)
set -euo pipefail

TAG="${CHATBOT_LOCAL_BASE:-chatbot-local-base:bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE=bookworm
FORCE=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --force) FORCE=1 ;;
        --tag) TAG="$2"; shift ;;
        --mirror) MIRROR="$2"; shift ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "docker-local-base.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done

for tool in docker debootstrap; do
    command -v "$tool" >/dev/null || { echo "docker-local-base.sh: $tool is not installed" >&2; exit 1; }
done
if [[ $(id -u) -ne 0 ]]; then
    echo "docker-local-base.sh: debootstrap needs root" >&2
    exit 1
fi
if [[ $FORCE -eq 0 ]] && docker image inspect "$TAG" >/dev/null 2>&1; then
    echo "docker-local-base.sh: $TAG exists (--force remakes it)"
    exit 0
fi

ROOTFS="$(mktemp -d "${TMPDIR:-/tmp}/chatbot-base.XXXXXX")"
trap 'rm -rf "$ROOTFS"' EXIT

echo "docker-local-base.sh: debootstrap $SUITE from $MIRROR into $ROOTFS"
debootstrap --variant=minbase \
    --include=python3,python3-venv,python-is-python3,ca-certificates,passwd \
    "$SUITE" "$ROOTFS" "$MIRROR" >"$ROOTFS.log" 2>&1 || {
    tail -n 30 "$ROOTFS.log" >&2
    rm -f "$ROOTFS.log"
    exit 1
}
rm -f "$ROOTFS.log"

# Trust what the host trusts (a TLS-intercepting proxy's CA, if any, is in its bundle).
if [[ -s /etc/ssl/certs/ca-certificates.crt ]]; then
    cp /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
fi
# What an image does not need: package caches and lists, docs, man pages, logs.
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/cache/apt/*.bin \
    "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* \
    "$ROOTFS"/usr/share/info/* "$ROOTFS"/var/log/*.log "$ROOTFS"/var/log/apt/*
# Device nodes and the proc/sys mount points are the engine's business.
rm -rf "${ROOTFS:?}"/dev/* "${ROOTFS:?}"/proc/* "${ROOTFS:?}"/sys/*

# The official image's environment: C.UTF-8 and the standard PATH; pip reads the CA bundle
# through SSL_CERT_FILE as well as through the file it replaced.
tar --numeric-owner -C "$ROOTFS" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    --message "debootstrap --variant=minbase $SUITE + python3, python3-venv (scripts/docker-local-base.sh)" \
    - "$TAG" >/dev/null
echo "docker-local-base.sh: made $TAG ($(docker image inspect --format '{{.Size}}' "$TAG") bytes)"
