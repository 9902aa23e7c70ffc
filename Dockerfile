# syntax=docker/dockerfile:1
#
# regdns: a static binary on a distroless image, run as a non-root user,
# serving DNS on port 53 (UDP and TCP).
#
#   docker build -t regdns .
#   docker run --rm -p 127.0.0.1:8053:53/udp -p 127.0.0.1:8053:53/tcp \
#     -e REGDNS_REDIS_URL=redis://redis:6379/0 regdns
#
# Subcommands run the same image: `docker run --rm regdns list`, `... health`,
# `... register -service S -port P -host H`. Settings come from REGDNS_*
# variables (REGDNS_REDIS_URL, REGDNS_DNS_ZONE, ...), which beat the config
# file in /etc/regdns/config.toml (a copy of config.example.toml; mount yours
# over it). Note that REGDNS_DNS_LISTEN is set below and so beats `listen` in
# a mounted config file: change the DNS address with that variable or -listen.

ARG GO_VERSION=1.26

# --- build: compiled on the builder's platform for the target's, so
# `docker buildx build --platform linux/amd64,linux/arm64` needs no emulation.
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-bookworm AS build
ARG TARGETOS
ARG TARGETARCH
RUN apt-get update \
 && apt-get install -y --no-install-recommends libcap2-bin \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    export CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
 && go build -trimpath -ldflags="-s -w" -o /out/regdns . \
 && go build -trimpath -ldflags="-s -w" -o /out/regdns-healthcheck ./deploy/docker/healthcheck
# The file capability lets the non-root user bind port 53 with this binary
# only: nothing else in the image can. It is an extended attribute, kept by
# BuildKit's COPY --from below (BuildKit is docker build's builder since
# Docker 23, and this file needs it); some other image builders drop it.
# Because the capability is marked effective, the container must keep
# NET_BIND_SERVICE: `--cap-drop ALL` needs `--cap-add NET_BIND_SERVICE` too,
# or exec fails with "operation not permitted".
RUN setcap cap_net_bind_service=+ep /out/regdns \
 && setcap -v cap_net_bind_service=+ep /out/regdns

# --- runtime: no shell, no package manager; CA certificates and
# /etc/passwd with the nonroot user (65532) come with the base image.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/regdns /regdns
COPY --from=build /out/regdns-healthcheck /regdns-healthcheck
COPY config.example.toml /etc/regdns/config.toml
# Numeric, so Kubernetes can check runAsNonRoot against the image.
USER 65532:65532
ENV REGDNS_CONFIG=/etc/regdns/config.toml \
    REGDNS_DNS_LISTEN=0.0.0.0:53
EXPOSE 53/udp 53/tcp
# /healthz on the HTTP listener of `regdns serve` (http.listen, default
# 127.0.0.1:9153; regdns-healthcheck follows REGDNS_HTTP_LISTEN when set).
# The check runs inside the container, so the loopback default is enough:
# publish or widen http.listen only to scrape /metrics from outside. Other
# subcommands (health, register) have no such listener: run them with
# --no-healthcheck, or `healthcheck: {disable: true}` in compose.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/regdns-healthcheck"]
ENTRYPOINT ["/regdns"]
CMD ["serve"]
