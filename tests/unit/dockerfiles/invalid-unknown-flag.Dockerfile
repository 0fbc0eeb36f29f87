FROM busybox
RUN --mount=type=cache,target=/root echo
