ARG A=1
RUN echo before
FROM busybox
