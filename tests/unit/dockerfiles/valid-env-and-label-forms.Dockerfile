FROM busybox
ENV A=1 B="two words" C=\$literal D=${A}x
ENV LEGACY  value with  spaces
ENV E='single quoted' F=a\ b
LABEL "com.example.vendor"="ACME Inc" version=1.0
LABEL multi.line="a" \
      other="b"
LABEL legacy value
