# escape=`
FROM busybox
COPY app\src C:\app\
RUN dir c:\ `
    && echo done
ENV PATH=C:\bin;`$PATH
