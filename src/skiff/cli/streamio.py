"""Interactive I/O for attach, run and exec: stdin forwarding, demuxed output, raw TTY, resizes."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import BinaryIO

from skiff.client.streams import STDERR, SYSTEM_ERROR, FrameDecoder, HijackedStream


@contextlib.contextmanager
def raw_terminal(enabled: bool) -> Iterator[None]:
    """Put the local terminal in raw mode (keys go straight to the container) and restore it."""
    if not enabled or not sys.stdin.isatty():
        yield
        return
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def console_size() -> list[int] | None:
    """[height, width] of the terminal on stdout, for ``ConsoleSize``; None when not a terminal."""
    if not sys.stdout.isatty():
        return None
    try:
        size = os.get_terminal_size(sys.stdout.fileno())
    except OSError:
        return None
    return [size.lines, size.columns]


@contextlib.contextmanager
def resizes(resize: Callable[[int, int], None] | None) -> Iterator[None]:
    """Send the terminal size now and on every SIGWINCH."""
    if resize is None or not sys.stdout.isatty():
        yield
        return

    def send(*_: object) -> None:
        size = os.get_terminal_size(sys.stdout.fileno())
        with contextlib.suppress(Exception):
            resize(size.lines, size.columns)

    send()
    previous = signal.signal(signal.SIGWINCH, send)
    try:
        yield
    finally:
        signal.signal(signal.SIGWINCH, previous)


def _forward_stdin(stream: HijackedStream, source: BinaryIO) -> None:
    fd = source.fileno()
    try:
        while True:
            data = os.read(fd, 4096)
            if not data:
                break
            stream.sendall(data)
    except OSError:
        pass
    finally:
        # EOF on our stdin becomes EOF on the container's stdin; output keeps flowing.
        stream.close_write()


def copy_output(stream: HijackedStream | Iterator[bytes], tty: bool, out: BinaryIO, err: BinaryIO) -> None:
    """Write a container's output: raw bytes with a TTY, else demultiplexed frames."""
    decoder = FrameDecoder()
    for chunk in stream:
        if tty:
            out.write(chunk)
            out.flush()
            continue
        for kind, payload in decoder.feed(chunk):
            target = err if kind in (STDERR, SYSTEM_ERROR) else out
            target.write(payload)
            target.flush()


def pump(
    stream: HijackedStream,
    tty: bool,
    stdin: BinaryIO | None,
    resize: Callable[[int, int], None] | None = None,
) -> None:
    """Run a hijacked session until the container closes its output."""
    out = sys.stdout.buffer
    err = sys.stderr.buffer
    if stdin is not None:
        threading.Thread(target=_forward_stdin, args=(stream, stdin), name="skiff-stdin", daemon=True).start()
    with raw_terminal(tty and stdin is not None), resizes(resize if tty else None):
        copy_output(stream, tty, out, err)
    stream.close()


def write_archive(chunks: Iterator[bytes], output: str | None, action: str) -> None:
    """``save``/``export`` output: to ``-o FILE`` atomically, else to stdout (never a terminal).

    The file is written beside its final name and renamed at the end (0600, as the docker CLI's
    CopyToFile makes it), so a failed or interrupted download never leaves half an archive.
    """
    import tempfile
    from pathlib import Path

    from skiff.errors import InvalidArgument

    if output is None:
        if sys.stdout.isatty():
            raise InvalidArgument("cowardly refusing to save to a terminal. Use the -o flag or redirect")
        out = sys.stdout.buffer
        for chunk in chunks:
            out.write(chunk)
        out.flush()
        return
    path = Path(output)
    directory = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".skiff-tmp", dir=directory)
    except OSError as exc:
        raise InvalidArgument(f"failed to {action}: invalid output path: {exc.strerror}: {path}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
