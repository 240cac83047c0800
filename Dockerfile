# The engine's image for those who have Docker (or podman/buildah): the same files, user, entrypoint,
# environment and volume as `npm run image` (scripts/build-image.mjs), which needs neither a
# daemon nor a base image. Both take the root file system from scripts/image-rootfs.sh, and
# test/image/image.test.ts checks that the final stage below says what build-image.mjs writes.
#   docker build --build-arg VERSION=$(node -p "require('./package.json').version") \
#     --build-arg REVISION=$(git rev-parse HEAD) -t wasm-engine:0.1.0 .
# The build stage is the official Node.js 24 image (Debian bookworm): it builds dist/, installs
# the production dependencies, and takes the shared libraries and CA bundle from its Debian.
FROM node:24-bookworm AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY . .
# The build context has no .git: the commit /system/info reports comes from the build argument.
ARG REVISION=unknown
RUN WASM_ENGINE_COMMIT="${REVISION}" npm run build && bash scripts/image-rootfs.sh /rootfs

FROM scratch
ARG VERSION=unknown
ARG REVISION=unknown
COPY --from=build /rootfs/runtime/ /
COPY --from=build --chown=10001:10001 /rootfs/volume/ /
COPY --from=build /rootfs/dependencies/ /
COPY --from=build /rootfs/engine/ /
LABEL org.opencontainers.image.title="wasm-engine" \
      org.opencontainers.image.description="A WebAssembly function engine: deploy .wasm functions from OCI images, invoke each call in a fresh sandbox." \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
ENV PATH=/usr/local/bin \
    WASM_ENGINE_HOST=0.0.0.0 \
    WASM_ENGINE_DATA_DIR=/data \
    NODE_USE_SYSTEM_CA=1
USER 10001:10001
WORKDIR /app
VOLUME ["/data"]
EXPOSE 10000/tcp
ENTRYPOINT ["/usr/local/bin/node", "/app/bin/wasm-engine.js", "serve"]
