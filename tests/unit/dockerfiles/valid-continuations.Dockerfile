FROM busybox
RUN apk add \
      curl \
# a comment line inside the continuation is dropped
      jq \

      git
RUN echo trailing-space-after-escape \   
    done
LABEL a=1 \
      b=2
CMD echo last
