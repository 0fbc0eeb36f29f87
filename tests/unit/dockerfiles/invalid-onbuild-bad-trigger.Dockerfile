FROM busybox
ONBUILD RUNN true
