# A stand-in for prom/prometheus from Debian's own package (2.42 in bookworm), for machines
# without an image registry: the same entry point, user (nobody), data directory and default
# command as the upstream image, and wget for the compose files' health checks.
ARG BASE_IMAGE=site-monitoring/debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends prometheus wget \
 && rm -rf /var/lib/apt/lists/* \
 && install -d -o nobody -g nogroup /prometheus
USER nobody
WORKDIR /prometheus
EXPOSE 9090
VOLUME ["/prometheus"]
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
