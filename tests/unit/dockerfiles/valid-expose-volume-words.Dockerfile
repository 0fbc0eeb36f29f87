FROM busybox
EXPOSE 80
EXPOSE 80/tcp   443/tcp	53/udp
VOLUME /var/lib/data /var/log
VOLUME ["/data", "/logs"]
STOPSIGNAL 9
USER 1000
WORKDIR relative/dir
