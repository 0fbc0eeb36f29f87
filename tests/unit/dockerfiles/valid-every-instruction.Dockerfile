ARG BASE=busybox
FROM $BASE AS base
MAINTAINER Someone <someone@example.com>
RUN echo run
CMD ["echo", "cmd"]
LABEL kind=test
EXPOSE 80 443/tcp 53/udp 8000-8010
ENV MODE=prod
ADD files.tar.gz /opt/
COPY conf/ /etc/app/
ENTRYPOINT ["/bin/sh", "-c"]
VOLUME /data
USER nobody:nogroup
WORKDIR /srv
ARG LEVEL=3
ONBUILD RUN echo child
STOPSIGNAL SIGTERM
HEALTHCHECK CMD true
SHELL ["/bin/sh", "-ec"]
