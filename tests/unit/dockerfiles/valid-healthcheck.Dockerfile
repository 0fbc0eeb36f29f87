FROM busybox
HEALTHCHECK --interval=1m30s --timeout=5s --start-period=2s --start-interval=500ms --retries=3 \
  CMD wget -q -O- http://localhost/ || exit 1
HEALTHCHECK CMD ["/bin/check", "--quiet"]
HEALTHCHECK --interval=1.5h cmd true
HEALTHCHECK NONE
