"""ADD <url>'s download against a loopback HTTP server: names, mode, mtime, dockerd's errors."""

from __future__ import annotations

import http.server
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from skiff.build.copy import download
from skiff.errors import InvalidArgument, NotFound

LAST_MODIFIED = "Wed, 21 Oct 2015 07:28:00 GMT"
LAST_MODIFIED_EPOCH = 1445412480


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        path = self.path.partition("?")[0]
        if path == "/missing":
            body = b"no such file here\n"
            self.send_response(404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        body = b"payload"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Last-Modified", LAST_MODIFIED)
        if path == "/named/":
            self.send_header("Content-Disposition", 'attachment; filename="../from-header.txt"')
        if path == "/dots/":
            self.send_header("Content-Disposition", 'attachment; filename=".."')
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_named_after_the_url_mode_0600_and_last_modified(base_url: str, tmp_path: Path) -> None:
    source = download(f"{base_url}/files/app.tar.gz?token=1", tmp_path, "/dl/")
    assert source.name == "app.tar.gz" and source.path == tmp_path / "app.tar.gz"
    assert source.path.read_bytes() == b"payload"
    st = os.stat(source.path)
    assert st.st_mode & 0o7777 == 0o600
    assert int(st.st_mtime) == LAST_MODIFIED_EPOCH


def test_name_from_content_disposition_stays_in_the_directory(base_url: str, tmp_path: Path) -> None:
    source = download(f"{base_url}/named/", tmp_path, "/dl/")
    assert source.path == tmp_path / "from-header.txt"


@pytest.mark.parametrize("path", ["/bare/", "/dots/"])
def test_no_name_into_a_directory_is_an_error_and_a_file_dest_is_fine(
    base_url: str, tmp_path: Path, path: str
) -> None:
    with pytest.raises(
        InvalidArgument, match=re.escape(f"cannot determine filename for source {base_url}{path}") + "$"
    ):
        download(f"{base_url}{path}", tmp_path, "/dl/")
    source = download(f"{base_url}{path}", tmp_path, "/dl/file")
    assert source.path == tmp_path / "__unnamed__"


def test_http_errors_read_as_dockerd_reports_them(base_url: str, tmp_path: Path) -> None:
    with pytest.raises(NotFound) as info:
        download(f"{base_url}/missing", tmp_path, "/x")
    assert (
        info.value.message == f"failed to GET {base_url}/missing with status 404 Not Found: no such file here"
    )
    with pytest.raises(NotFound, match=re.escape("failed to GET http://127.0.0.1:1/x: ") + ".*refused"):
        download("http://127.0.0.1:1/x", tmp_path, "/x")
