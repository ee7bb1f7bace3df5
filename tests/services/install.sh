#!/usr/bin/env bash
# Installs every server kiln's end-to-end tests start, idempotently: the OCI registry
# (docker-registry, apache2-utils for htpasswd), the S3 server (s3s-fs, built by cargo), the queue's
# database (Debian's postgresql-15), and the
# standard S3 client the interop test reads back with (Debian's python3-boto3), and what the build
# sandbox's tests use: pasta (Debian's passt) for builds' network, python3 for the socket and terminal
# attacks, dpkg-deb for the package install test, iproute2 to look at the host's interfaces; and the
# browser `kiln serve`'s tests drive (Debian's chromium and chromium-driver).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

packages=()
command -v docker-registry >/dev/null || packages+=(docker-registry)
[ -x /usr/lib/postgresql/15/bin/postgres ] || packages+=(postgresql-15)
command -v htpasswd >/dev/null || packages+=(apache2-utils)
command -v curl >/dev/null || packages+=(curl)
/usr/bin/python3 -c 'import boto3' 2>/dev/null || packages+=(python3-boto3)
command -v pasta >/dev/null || packages+=(passt)
command -v python3 >/dev/null || packages+=(python3)
command -v dpkg-deb >/dev/null || packages+=(dpkg)
command -v ip >/dev/null || packages+=(iproute2)
command -v setfattr >/dev/null || packages+=(attr)
command -v chattr >/dev/null || packages+=(e2fsprogs)
[ -x /usr/bin/chromium ] || packages+=(chromium)
[ -x /usr/bin/chromedriver ] || packages+=(chromium-driver)
if [ ${#packages[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "missing: ${packages[*]}; run: sudo apt-get install ${packages[*]}" >&2
        exit 1
    fi
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi
"$here/registry.sh" install
"$here/s3.sh" install
"$here/postgres.sh" install
