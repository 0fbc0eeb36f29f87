FROM busybox
HEALTHCHECK --timeout=5sec CMD true
