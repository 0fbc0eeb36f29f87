FROM busybox
ONBUILD RUN echo from the child
ONBUILD COPY --chown=1:1 . /app/
onbuild   ENV A=1 B=2
ONBUILD HEALTHCHECK NONE
