"""A narrated end-to-end demo of skiff, driving only the ``skiff`` CLI (``make demo``).

It starts skiffd if nothing answers on the default socket (and leaves it running afterwards,
like docker's daemon), makes sure the busybox image exists, runs a web server container with
resource limits on a user-defined network with a published port, shows it answering inside
its container, on the host's loopback and by name from a second container, inspects it, stops
and removes it (and the network), and checks that nothing is left. On any failure it removes what it made and
exits non-zero with the failing command's output.
"""

from __future__ import annotations

import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

SOCKET = Path("/run/skiff/skiff.sock")
NAME = "skiff-demo-web"
NETWORK = "skiff-demo-net"
BIN = Path(sys.executable).parent
console = Console(highlight=False)


class DemoFailure(Exception):
    """A demo step failed; the message carries the command and its output."""


def skiff(*args: str, show: bool = True, check: bool = True) -> str:
    """Run ``skiff <args>``, echoing the command and its output; raise DemoFailure if it fails."""
    argv = [str(BIN / "skiff"), *args]
    if show:
        console.print(f"[bold cyan]$ skiff {shlex.join(args)}[/]")
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    output = (proc.stdout + proc.stderr).rstrip()
    if show and output:
        console.print(output, markup=False)
    if check and proc.returncode != 0:
        raise DemoFailure(f"`skiff {shlex.join(args)}` exited with {proc.returncode}:\n{output}")
    return proc.stdout


def image_exists(ref: str) -> bool:
    """True if ``skiff image inspect`` finds the image (it prints ``[]`` and fails when not)."""
    argv = [str(BIN / "skiff"), "image", "inspect", ref]
    return subprocess.run(argv, capture_output=True, timeout=60, check=False).returncode == 0


def daemon_answers() -> bool:
    """True if something answers ``GET /_ping`` with 200 on the default socket."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            sock.connect(str(SOCKET))
            sock.sendall(b"GET /_ping HTTP/1.1\r\nHost: skiff\r\nConnection: close\r\n\r\n")
            return sock.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def ensure_daemon() -> None:
    """Start skiffd in the background unless one already answers; give up after 15 s."""
    if daemon_answers():
        console.print(f"skiffd is already answering on {SOCKET}")
        return
    log_dir = Path("/var/log/skiff")
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / "skiffd.log"
    console.print(f"[bold cyan]$ skiffd &[/]   (log: {log_path})")
    with log_path.open("ab") as log:
        # A session of its own: the daemon must outlive this demo, as dockerd outlives `docker run`.
        proc = subprocess.Popen(
            [str(BIN / "skiffd")], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if daemon_answers():
            console.print(f"skiffd started (pid {proc.pid}); it stays running after the demo")
            return
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    tail = log_path.read_text(errors="replace")[-1500:]
    raise DemoFailure(f"skiffd did not answer on {SOCKET} within 15 s; end of {log_path}:\n{tail}")


def heading(text: str) -> None:
    console.rule(f"[bold]{text}")


def serve_and_fetch() -> None:
    """Fetch the page from inside the container; httpd may need a moment to listen."""
    deadline = time.monotonic() + 10
    while True:
        try:
            page = skiff("exec", NAME, "wget", "-qO-", "http://127.0.0.1:8080/")
        except DemoFailure:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
            continue
        if "hello from skiff" not in page:
            raise DemoFailure(f"the web server answered something unexpected: {page!r}")
        return


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fetch_from_host(port: int) -> None:
    import urllib.request

    url = f"http://127.0.0.1:{port}/"
    console.print(f"$ fetch {url} (from the host)", style="dim")
    page = urllib.request.urlopen(url, timeout=10).read().decode()
    console.print(page.rstrip())
    if "hello from skiff" not in page:
        raise DemoFailure(f"the published port answered something unexpected: {page!r}")


def run_demo() -> None:
    heading("1. the daemon")
    ensure_daemon()
    heading("2. the image")
    if not image_exists("busybox"):
        skiff("image", "bootstrap", "busybox")
    skiff("images")
    heading("3. a network, and a web server on it with limits: 64 MiB, half a CPU, 64 processes")
    skiff("network", "create", NETWORK)
    web = 'mkdir -p /www && echo "hello from skiff" > /www/index.html && exec httpd -f -p 8080 -h /www'
    # --init: tini is PID 1 and passes SIGTERM on, so `stop` is graceful instead of a 10 s wait.
    limits = ("--init", "-m", "64m", "--cpus", "0.5", "--pids-limit", "64")
    port = free_port()
    skiff(
        "run",
        "-d",
        "--name",
        NAME,
        "--network",
        NETWORK,
        "-p",
        f"127.0.0.1:{port}:8080",
        *limits,
        "busybox",
        "sh",
        "-c",
        web,
    )
    heading("4. it answers: inside its container, on the host's published port, and by name")
    serve_and_fetch()
    fetch_from_host(port)
    page = skiff("run", "--rm", "--network", NETWORK, "busybox", "wget", "-qO-", f"http://{NAME}:8080/")
    if "hello from skiff" not in page:
        raise DemoFailure(f"a second container could not reach {NAME} by name: {page!r}")
    skiff("port", NAME)
    heading("5. look at it")
    skiff("ps")
    skiff("logs", NAME)
    skiff("stats", "--no-stream", NAME)
    skiff("top", NAME)
    status = skiff("inspect", "-f", "{{.State.Status}} {{.HostConfig.Memory}}", NAME).split()
    if status != ["running", str(64 * 1024 * 1024)]:
        raise DemoFailure(f"expected 'running 67108864' from inspect, got {' '.join(status)!r}")
    heading("6. stop and remove it")
    skiff("stop", NAME)
    skiff("rm", NAME)
    skiff("network", "rm", NETWORK)
    heading("7. nothing is left")
    names = skiff("ps", "-a", "--format", "{{.Names}}").split()
    if any(n.startswith("skiff-demo") for n in names):
        raise DemoFailure(f"demo containers left behind: {names}")
    console.print("no skiff-demo containers left")


def main() -> None:
    """Entry point of ``python -m skiff.demo``."""
    try:
        run_demo()
    except (DemoFailure, OSError, subprocess.TimeoutExpired) as exc:
        console.print("[bold red]demo failed:[/]")
        console.print(str(exc), markup=False)
        try:
            skiff("rm", "-f", NAME, show=False, check=False)  # clean up what the demo made
            skiff("network", "rm", NETWORK, show=False, check=False)
        except (OSError, subprocess.TimeoutExpired):
            pass
        sys.exit(1)
    console.print("[bold green]demo complete.[/] skiffd keeps running, like docker's daemon.")


if __name__ == "__main__":
    main()
