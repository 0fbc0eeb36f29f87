FROM busybox
RUN echo a \
    b \
    c
EXPOSE
