FROM busybox
RUN echo ok
RUNN echo typo
