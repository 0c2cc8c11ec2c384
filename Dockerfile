# The operator's image, for those who build with a container engine:
#
#   docker build -t ghcr.io/switchyard-io/switchyard:0.1.0 .
#
# The project builds it without one (`cargo xtask image --release`: a byte-reproducible
# archive on a base assembled from Debian 13's packages). This file gives the same image
# layout on distroless's equivalent base (glibc and libgcc from Debian 13): the binary at
# /usr/local/bin/switchyard, the entrypoint, the user 65532, the default command. A test
# (xtask's image tests) keeps those four in step with switchyard-image.
FROM docker.io/library/rust:1.95-trixie AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p switchyard \
    && install -m 0755 target/release/switchyard /switchyard

FROM gcr.io/distroless/cc-debian13:nonroot
COPY --from=build /switchyard /usr/local/bin/switchyard
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/switchyard"]
CMD ["operator"]
