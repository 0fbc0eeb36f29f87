FROM busybox
COPY --chown=app:app --chmod=0755 bin/* lib/?.so /usr/local/
COPY ["file with spaces.txt", "/dest dir/"]
COPY --link a b
ADD --chown=1000 --chmod=644 https://example.com/a.tar.gz /downloads/
ADD "quotes do not group" /q
COPY --from=build -- --odd-name /x
