FROM busybox AS base
RUN true
FROM busybox AS BASE
