# This project's two images from release binaries built on the host, for machines without an
# image registry (the tests, air-gapped sites). compose/local-images.sh builds them: the build
# context is a directory holding only `site-exporter` and `federation-gateway`, and the bases
# are compose/Dockerfile's `exporter-base` and `gateway-base` stages, so everything but the
# binary is what production ships (the production images are compose/Dockerfile's `exporter`
# and `gateway` targets).
ARG EXPORTER_BASE=site-monitoring/site-exporter-base:local
ARG GATEWAY_BASE=site-monitoring/federation-gateway-base:local

FROM ${EXPORTER_BASE} AS exporter-from-host-binaries
COPY site-exporter /usr/local/bin/site-exporter

FROM ${GATEWAY_BASE} AS gateway-from-host-binaries
COPY federation-gateway /usr/local/bin/federation-gateway

# The benchmarks' fake Keystone + Nova (exporter/examples/fake_openstack), for the site stack
# tests only: never part of a site.
FROM ${EXPORTER_BASE} AS fake-openstack-from-host-binaries
COPY fake_openstack /usr/local/bin/fake_openstack
HEALTHCHECK NONE
ENTRYPOINT ["fake_openstack"]
