# syntax=docker/dockerfile:1.4
# check=skip=JSONArgsRecommended
# escape=\

FROM busybox
# escape=`
RUN echo a \
    b
