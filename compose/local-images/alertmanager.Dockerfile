# A stand-in for prom/alertmanager from Debian's own package (0.25 in bookworm), for machines
# without an image registry: the same entry point, user (nobody), data directory and default
# command as the upstream image, and amtool (in the package) for the compose files' health
# checks.
ARG BASE_IMAGE=site-monitoring/debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends prometheus-alertmanager \
 && rm -rf /var/lib/apt/lists/* \
 && install -d -o nobody -g nogroup /alertmanager
USER nobody
WORKDIR /alertmanager
EXPOSE 9093
VOLUME ["/alertmanager"]
ENTRYPOINT ["/usr/bin/prometheus-alertmanager"]
CMD ["--config.file=/etc/alertmanager/alertmanager.yml", "--storage.path=/alertmanager"]
