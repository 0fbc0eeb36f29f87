# A comment before anything: it ends the directives.

FROM busybox
   # an indented comment

RUN echo one   # not a comment: the shell gets it
#RUN echo never
CMD ["sh"]
