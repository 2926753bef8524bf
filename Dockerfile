# Multi-stage build: a release binary in a small Debian image, run as a non-root user.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin omega

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/omega --create-home omega
COPY --from=build /src/target/release/omega /usr/local/bin/omega
USER omega
WORKDIR /var/lib/omega
ENV OMEGA_LISTEN=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["omega"]
CMD ["serve"]
