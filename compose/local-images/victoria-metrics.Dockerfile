# A stand-in for victoriametrics/victoria-metrics from Debian's own package (1.79 in bookworm),
# for machines without an image registry: the same entry point and flags as the upstream
# image, a data directory its user can write, and wget for the compose files' health checks.
ARG BASE_IMAGE=site-monitoring/debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends victoria-metrics wget \
 && rm -rf /var/lib/apt/lists/* \
 && install -d -o nobody -g nogroup /storage
USER nobody
WORKDIR /storage
EXPOSE 8428
VOLUME ["/storage"]
ENTRYPOINT ["/usr/bin/victoria-metrics"]
CMD ["-storageDataPath=/storage"]
