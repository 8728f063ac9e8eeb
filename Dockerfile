# wkd in a FROM scratch image: no base image to pull, so `docker build` works offline.
#
# The binary is built on the host (static, CGO_ENABLED=0) and staged with a minimal root
# file system by scripts/cluster.sh; build the image with `make image`, not plain
# `docker build`, so the staging folder build/docker/ exists:
#
#   build/docker/wkd                 the static binary
#   build/docker/rootfs/etc/         passwd and group (user nonroot, uid 65532), CA certificates
#   build/docker/owned/              empty folders the nonroot user must own
#
# A named volume mounted on /datasets, /runs or /logs starts with the ownership of the image's
# folder, so the nonroot user can write into fresh volumes.
FROM scratch
LABEL org.opencontainers.image.title="wkd" org.opencontainers.image.description="wavelet knowledge distillation for image-to-image GANs"
COPY build/docker/rootfs/ /
COPY --chown=65532:65532 build/docker/owned/ /
COPY build/docker/wkd /wkd
ENV HOME=/home/nonroot TMPDIR=/tmp
WORKDIR /home/nonroot
USER nonroot:nonroot
# 7946: memberlist (TCP and UDP); 4222: NATS (the nats service); 9100: --metrics.
EXPOSE 7946/tcp 7946/udp 4222 9100
ENTRYPOINT ["/wkd"]
CMD ["help"]
