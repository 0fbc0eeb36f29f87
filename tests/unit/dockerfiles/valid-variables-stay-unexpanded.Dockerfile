FROM busybox
ENV HOME_DIR=/home/app
WORKDIR $HOME_DIR/${SUB:-src}
COPY ${SRC:+given} ${DEST-/default}/
USER ${UID:?required}
EXPOSE $PORT ${OTHER_PORT+8080}/tcp
RUN echo \$NOT_A_VAR ${HOME_DIR}
