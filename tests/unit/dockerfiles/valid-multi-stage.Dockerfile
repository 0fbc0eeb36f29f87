FROM busybox AS Build
RUN echo built > /out
FROM --platform=linux/amd64 busybox as test
COPY --from=build /out /in
FROM scratch
COPY --from=0 /out /
COPY --from=busybox:latest /bin/busybox /bin/
