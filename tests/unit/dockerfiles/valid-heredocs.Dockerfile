FROM busybox
RUN <<EOF
echo one
echo $HOME
EOF
RUN cat <<A && cat <<"B"
first
A
second $x
B
COPY <<-'CONF' /etc/app.conf
	key=$value
		nested
	CONF
ADD <<EOF /note
note
EOF
LABEL text=<<EOF
CMD ["cat", "/note"]
