# keygate container image.
#
#   docker build -t keygate .
#   docker run -p 8080:8080 -p 127.0.0.1:9090:9090 \
#     -v keygate-data:/var/lib/keygate -e KEYGATE_ADMIN_TOKEN=... keygate
#
# Build stage: the Rust toolchain compiles the release binary. Runtime stage:
# Debian slim (glibc, no compiler, no package manager cache), a non-root
# user, `keygate serve` as the entry point. TLS roots are built into the
# binary (webpki-roots) and SQLite is bundled, so nothing else is installed.
# The configuration lives in /etc/keygate, the SQLite store (the default) in
# /var/lib/keygate: mount either to keep or change it.

ARG RUST_VERSION=1.89
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build
WORKDIR /src
# The release profile keeps line tables for profiling on a host; the image
# drops them (80 MB -> about 20 MB) and keeps the symbols for backtraces.
ENV CARGO_PROFILE_RELEASE_STRIP=debuginfo
# Dependencies first, so that a source change does not rebuild them: a
# stub crate with the real manifest and lock file.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
    && echo 'fn main() {}' > src/main.rs && touch src/lib.rs && echo 'fn main() {}' > benches/key_check.rs \
    && cargo build --release --locked --bin keygate \
    && rm -rf src benches target/release/keygate* target/release/deps/keygate-* target/release/.fingerprint/keygate-*
COPY src src
COPY migrations migrations
COPY config config
COPY benches benches
RUN cargo build --release --locked --bin keygate \
    && cp target/release/keygate /keygate

FROM debian:${DEBIAN_RELEASE}-slim
RUN groupadd --system --gid 10001 keygate \
    && useradd --system --uid 10001 --gid keygate --home-dir /var/lib/keygate --shell /usr/sbin/nologin keygate \
    && install -d -o keygate -g keygate -m 0700 /var/lib/keygate \
    && install -d -m 0755 /etc/keygate
COPY --from=build /keygate /usr/local/bin/keygate
# glibc's heap on transparent huge pages: fewer TLB misses in the key
# lookup at a million keys (docs/architecture.md#the-snapshot).
ENV GLIBC_TUNABLES=glibc.malloc.hugetlb=1
# Listens beyond the container; the store in the data volume.
COPY deploy/image/keygate.yaml /etc/keygate/keygate.yaml
USER 10001:10001
WORKDIR /var/lib/keygate
VOLUME ["/etc/keygate", "/var/lib/keygate"]
EXPOSE 8080 9090
STOPSIGNAL SIGTERM
# /readyz on the admin port, with bash's /dev/tcp: the image carries no HTTP
# client. Readiness stays 200 through a store outage (the gateway serves its
# last snapshot) and turns 503 while draining.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["/bin/bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9090 && printf 'GET /readyz HTTP/1.0\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["/usr/local/bin/keygate"]
CMD ["serve", "--config", "/etc/keygate/keygate.yaml"]
