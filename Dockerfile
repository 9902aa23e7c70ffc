# Build a static binary, then run it as a non-root user on a minimal image.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/regdns .

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/regdns /regdns
COPY config.example.toml /etc/regdns/config.toml
USER nonroot:nonroot
# 8053 needs no capability; to serve port 53 run with --cap-add NET_BIND_SERVICE
# (the binary must then have the file capability, or use a port mapping 53->8053).
EXPOSE 8053/udp 8053/tcp
ENV REGDNS_DNS_LISTEN=0.0.0.0:8053
ENTRYPOINT ["/regdns"]
CMD ["serve", "-config", "/etc/regdns/config.toml"]
