#!/usr/bin/env bash
# Builds every image the compose stacks need from Debian packages only, for machines that
# cannot reach an image registry (the tests in run-tests.sh, an air-gapped site):
#   site-monitoring/debian:bookworm-slim     bookworm (minbase) by mmdebstrap -> docker import;
#                                            kept when present (REBUILD_BASE=1 rebuilds it)
#   site-monitoring/site-exporter:local      compose/Dockerfile's `exporter-base` and
#   site-monitoring/federation-gateway:local `gateway-base` stages on that base, plus release
#                                            binaries built here by cargo
#                                            (compose/local-images/host-binaries.Dockerfile)
#   site-monitoring/prometheus:local         Debian's prometheus (2.42) on that base
#                                            (compose/local-images/prometheus.Dockerfile)
#   site-monitoring/alertmanager:local       Debian's prometheus-alertmanager (0.25) on that
#                                            base (compose/local-images/alertmanager.Dockerfile)
#   site-monitoring/victoria-metrics:local   Debian's victoria-metrics (1.79) on that base
#                                            (compose/local-images/victoria-metrics.Dockerfile)
#   site-monitoring/fake-openstack:local     for the tests only: the fake Keystone + Nova of
#                                            exporter/examples/fake_openstack
# Grafana has no Debian package: the stacks run without it here.
#
# Needs a Docker engine, mmdebstrap (only while the base is missing), cargo, and Debian's
# package mirror (DEBIAN_MIRROR, default http://deb.debian.org/debian; DEBIAN_SECURITY_MIRROR,
# default http://deb.debian.org/debian-security), which the image builds use too. Works with
# the legacy builder and with BuildKit. Progress goes to standard error; standard output gets
# the variables that point the compose files at these images, e.g.
#   compose/local-images.sh > compose/.env
#   docker-compose -f compose/docker-compose.site.yml up -d
set -euo pipefail
cd "$(dirname "$0")/.."

mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
base=site-monitoring/debian:bookworm-slim
exporter=site-monitoring/site-exporter:local
gateway=site-monitoring/federation-gateway:local
prometheus=site-monitoring/prometheus:local
alertmanager=site-monitoring/alertmanager:local
victoria_metrics=site-monitoring/victoria-metrics:local
fake_openstack=site-monitoring/fake-openstack:local

say() { echo "local-images: $*" >&2; }

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

image_id() { docker image inspect -f '{{.Id}}' "$1" 2>/dev/null || true; }

# docker build, then remove the image the tag named before if nothing else uses it, so that
# repeated runs do not pile up old binaries.
build() {
  local tag=$1 old new
  shift
  old=$(image_id "$tag")
  if ! docker build -t "$tag" "$@" >"$logs/build.log" 2>&1; then
    cat "$logs/build.log" >&2
    say "building $tag failed"
    exit 1
  fi
  new=$(image_id "$tag")
  say "$tag ${new:7:12}"
  if [ -n "$old" ] && [ "$old" != "$new" ]; then
    docker rmi "$old" >/dev/null 2>&1 || true
  fi
}

if [ -n "$(image_id "$base")" ] && [ "${REBUILD_BASE:-}" != 1 ]; then
  say "$base present, kept"
else
  command -v mmdebstrap >/dev/null || { say "mmdebstrap is missing (apt-get install mmdebstrap)"; exit 1; }
  say "building $base from $mirror (mmdebstrap, about 2 minutes)"
  rootfs=$(mktemp -d)
  trap 'rm -rf "$logs" "$rootfs"' EXIT
  # Like the debian:bookworm-slim image: minbase, without documentation.
  mmdebstrap --quiet --variant=minbase --format=tar \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
    bookworm "$rootfs/rootfs.tar" \
    "deb $mirror bookworm main" "deb $mirror bookworm-updates main" \
    "deb $security bookworm-security main" </dev/null
  docker import --change 'CMD ["bash"]' "$rootfs/rootfs.tar" "$base" >/dev/null
  say "$base imported"
fi

# The binaries, as the production build stage makes them.
say "cargo build --release (site-exporter, federation-gateway)"
cargo build --quiet --release --locked --all-features -p site-exporter -p federation-gateway
cargo build --quiet --release --locked --all-features -p site-exporter --example fake_openstack
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
bin=$(mktemp -d)
trap 'rm -rf "$logs" "$bin" ${rootfs:+"$rootfs"}' EXIT
install -m 0755 "$target_dir/release/site-exporter" "$target_dir/release/federation-gateway" \
  "$target_dir/release/examples/fake_openstack" "$bin/"

build site-monitoring/site-exporter-base:local -f compose/Dockerfile --target exporter-base \
  --build-arg RUNTIME_IMAGE="$base" compose/local-images
build site-monitoring/federation-gateway-base:local -f compose/Dockerfile --target gateway-base \
  --build-arg RUNTIME_IMAGE="$base" compose/local-images
for image in exporter gateway fake-openstack; do
  case $image in
    exporter) tag=$exporter ;;
    gateway) tag=$gateway ;;
    fake-openstack) tag=$fake_openstack ;;
  esac
  build "$tag" -f compose/local-images/host-binaries.Dockerfile \
    --target "$image-from-host-binaries" \
    --build-arg EXPORTER_BASE=site-monitoring/site-exporter-base:local \
    --build-arg GATEWAY_BASE=site-monitoring/federation-gateway-base:local "$bin"
done
build "$prometheus" -f compose/local-images/prometheus.Dockerfile \
  --build-arg BASE_IMAGE="$base" compose/local-images
build "$alertmanager" -f compose/local-images/alertmanager.Dockerfile \
  --build-arg BASE_IMAGE="$base" compose/local-images
build "$victoria_metrics" -f compose/local-images/victoria-metrics.Dockerfile \
  --build-arg BASE_IMAGE="$base" compose/local-images

echo "EXPORTER_IMAGE=$exporter"
echo "GATEWAY_IMAGE=$gateway"
echo "PROMETHEUS_IMAGE=$prometheus"
echo "ALERTMANAGER_IMAGE=$alertmanager"
echo "VICTORIAMETRICS_IMAGE=$victoria_metrics"
echo "FAKE_OPENSTACK_IMAGE=$fake_openstack"
