FROM busybox AT base
