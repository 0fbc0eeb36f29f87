FROM busybox
RUN ["echo", "exec form"]
RUN echo shell form
CMD ["sh", "-c", "echo $HOME"]
CMD echo not [json]
ENTRYPOINT [ "top", "-b" ]
ENTRYPOINT [not json
CMD []
RUN ['single', 'quotes', 'are', 'not', 'json']
