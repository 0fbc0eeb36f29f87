"""A narrated end-to-end demo of skiff, driving only the ``skiff`` CLI (``make demo``).

The main part (``python -m skiff.demo``) is a cluster: ``skiff lab up`` makes three hosts on
this machine (network namespaces, a skiffd each) and switches the CLI to the lab's context;
a service of six busybox replicas is spread across them; ``skiff lab kill n3`` cuts one
host's power, and its replicas run again on the other two (``service ps`` before and after);
then ``skiff lab down`` removes the lab and switches the context back.

``python -m skiff.demo compose`` (``make demo-compose``) is the single-host part. It starts skiffd if nothing answers on the default socket (and leaves it running afterwards,
like docker's daemon), makes sure the busybox image exists, then runs a compose application
(examples/compose/busybox-app: a web server and a worker on one network, sharing a volume):
``compose up`` with its progress display, the page answering on the host's published port
and by name inside the project network, the resource limits the file asked for, a scale-up of
the worker, ``ps``/``logs``/``top``, a no-change ``up`` that leaves everything running, and
``down -v``; then it checks that nothing is left. On any failure it removes what it made and
exits non-zero with the failing command's output.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

DEFAULT_SOCKET = Path("/run/skiff/skiff.sock")
# SKIFF_HOST=unix:///path runs the demo against that daemon (which must be running already).
_HOST = os.environ.get("SKIFF_HOST", "")
SOCKET = Path(_HOST[len("unix://") :]) if _HOST.startswith("unix://") else DEFAULT_SOCKET
PROJECT = "skiff-demo"
BIN = Path(sys.executable).parent
console = Console(highlight=False)


def compose_file() -> Path:
    """The example application: in the source tree, next to the package."""
    for base in (Path(__file__).resolve().parents[2], Path.cwd()):
        path = base / "examples" / "compose" / "busybox-app" / "compose.yaml"
        if path.is_file():
            return path
    raise DemoFailure(
        "examples/compose/busybox-app/compose.yaml not found: run the demo from the source tree"
    )


class DemoFailure(Exception):
    """A demo step failed; the message carries the command and its output."""


def skiff(
    *args: str, show: bool = True, check: bool = True, env: dict[str, str] | None = None, echo: str = ""
) -> str:
    """Run ``skiff <args>``, echoing the command (or ``echo``) and its output; raise DemoFailure if it fails."""
    argv = [str(BIN / "skiff"), *args]
    shown = echo or f"skiff {shlex.join(args)}"
    if show:
        console.print(f"[bold cyan]$ {shown}[/]")
    proc = subprocess.run(
        argv, capture_output=True, text=True, timeout=180, check=False, env={**os.environ, **(env or {})}
    )
    output = (proc.stderr + proc.stdout).rstrip()  # compose's progress (stderr) before its result
    if show and output:
        console.print(output, markup=False)
    if check and proc.returncode != 0:
        raise DemoFailure(f"`{shown}` exited with {proc.returncode}:\n{output}")
    return proc.stdout


class App:
    """``skiff compose -p skiff-demo -f <example> ...`` with the demo's host port."""

    def __init__(self, port: int) -> None:
        self.file = compose_file()
        self.env = {"WEB_PORT": str(port)}

    def __call__(self, *args: str, show: bool = True) -> str:
        # --progress plain: the output is captured, so status lines are printed as lines.
        flags = ("compose", "-p", PROJECT, "-f", str(self.file), "--progress", "plain")
        return skiff(*flags, *args, show=show, env=self.env, echo=f"skiff compose {shlex.join(args)}")


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
    if SOCKET != DEFAULT_SOCKET:
        raise DemoFailure(f"nothing answers on {SOCKET} (SKIFF_HOST): start that skiffd first")
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fetch_from_host(port: int) -> str:
    import urllib.request

    url = f"http://127.0.0.1:{port}/"
    console.print(f"$ fetch {url} (from the host)", style="dim")
    page = str(urllib.request.urlopen(url, timeout=10).read().decode())
    console.print(page.rstrip())
    if "hello from worker" not in page:
        raise DemoFailure(f"the published port answered something unexpected: {page!r}")
    return page


def wait_for_readers(app: App, count: int) -> None:
    """Until ``count`` workers have each fetched the page back from web by name."""
    deadline = time.monotonic() + 20
    while True:
        logs = app("logs", "worker", show=False)
        readers = {line.split("|")[0].strip() for line in logs.splitlines() if "web says: <h1>hello" in line}
        if len(readers) >= count:
            return
        if time.monotonic() > deadline:
            raise DemoFailure(f"expected {count} workers reading the page from web, saw {sorted(readers)}")
        time.sleep(0.5)


LAB = "demo"
SERVICE = "web"
REPLICAS = 6


def lab_env() -> dict[str, str]:
    """The lab commands go by the current context: an address in the environment would win over it."""
    return {k: v for k, v in os.environ.items() if k not in ("SKIFF_HOST", "DOCKER_HOST", "SKIFF_CONTEXT")}


def lab_skiff(*args: str, show: bool = True, check: bool = True) -> str:
    argv = [str(BIN / "skiff"), *args]
    if show:
        console.print(f"[bold cyan]$ skiff {shlex.join(args)}[/]")
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False, env=lab_env())
    output = (proc.stderr + proc.stdout).rstrip()
    if show and output:
        console.print(output, markup=False, soft_wrap=True)
    if check and proc.returncode != 0:
        raise DemoFailure(f"`skiff {shlex.join(args)}` exited with {proc.returncode}:\n{output}")
    return proc.stdout


def placement(host: str) -> dict[str, int]:
    """Running tasks of the demo service per node hostname (from the lab's manager)."""
    from skiff.client import connect

    client: Any = connect(host)
    counts: dict[str, int] = {}
    for task in client.tasks(service=SERVICE):
        if task.get("state") == "running" and task.get("desired_state") == "running":
            node = str(task.get("NodeHostname") or task.get("node_id", "?"))
            counts[node] = counts.get(node, 0) + 1
    return counts


def wait_placement(
    host: str, want: Callable[[dict[str, int]], bool], what: str, timeout: float = 90
) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    seen: dict[str, int] = {}
    with console.status(f"waiting: {what}"):
        while time.monotonic() < deadline:
            try:
                seen = placement(host)
            except Exception:  # the manager may be busy electing or restarting: ask again
                seen = {}
            if want(seen):
                console.print(
                    f"[green]ok[/] {what}: " + ", ".join(f"{n}: {c}" for n, c in sorted(seen.items()))
                )
                return seen
            time.sleep(0.5)
    raise DemoFailure(f"timed out waiting for {what}; running replicas per node: {seen}")


def run_lab_demo() -> None:
    if os.geteuid() != 0:
        raise DemoFailure("the lab demo makes network namespaces: run it as root (sudo make demo)")
    lab_skiff("lab", "down", LAB, show=False, check=False)  # a lab left by an interrupted run
    heading("1. a three-host cluster on this machine: skiff lab up")
    lab_skiff("lab", "up", "--nodes", "3", "--name", LAB)
    host = f"unix:///run/skiff-lab/{LAB}/n1/skiff.sock"
    lab_skiff("context", "ls")
    heading("2. the nodes, as the manager sees them")
    lab_skiff("node", "ls")
    heading(f"3. a service of {REPLICAS} replicas, spread over the nodes")
    lab_skiff("service", "create", "--name", SERVICE, "--replicas", str(REPLICAS), "busybox", "sleep", "1d")
    before = wait_placement(
        host,
        lambda c: sum(c.values()) == REPLICAS and len(c) == 3,
        f"{REPLICAS} replicas running on 3 nodes",
    )
    lab_skiff("service", "ls")
    lab_skiff("service", "ps", SERVICE)
    heading("4. n3 loses power: skiff lab kill n3 (its skiffd, conmon and containers get SIGKILL)")
    lab_skiff("lab", "kill", "n3")
    after = wait_placement(
        host,
        lambda c: sum(c.values()) == REPLICAS and "n3" not in c,
        f"n3's {before.get('n3', 0)} replicas running again on n1 and n2",
    )
    lab_skiff("node", "ls")
    lab_skiff("service", "ps", SERVICE)
    console.print(f"before: {before}   after: {after}", style="dim")
    heading("5. skiff lab down: every namespace, process and file of the lab is gone")
    lab_skiff("lab", "down", LAB)
    lab_skiff("context", "ls")
    left = (
        [p.name for p in Path("/run/netns").glob(f"skiff-lab-{LAB}-*")] if Path("/run/netns").is_dir() else []
    )
    if left or Path(f"/run/skiff-lab/{LAB}").exists() or Path(f"/var/lib/skiff-lab/{LAB}").exists():
        raise DemoFailure(f"lab objects left behind: {left}")
    console.print("no lab namespaces, daemons or state left")


def run_demo() -> None:
    heading("1. the daemon")
    ensure_daemon()
    heading("2. the image")
    if not image_exists("busybox"):
        skiff("image", "bootstrap", "busybox")
    skiff("images")
    app = App(free_port())
    console.print(f"[dim]the application: {app.file}[/]")
    console.print(
        app.file.read_text().split("\nservices:", 1)[1].join(["services:", ""]), markup=False, style="dim"
    )
    heading("3. compose up: a network, a volume, a worker, a web server with limits, healthy")
    app("up", "-d", "--wait")
    heading("4. it answers: on the host's published port, and by name inside the project network")
    fetch_from_host(int(app.env["WEB_PORT"]))
    wait_for_readers(app, 1)
    limits = skiff(
        "inspect", "-f", "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}}", f"{PROJECT}-web-1"
    ).split()
    console.print(f"web's limits: {int(limits[0]) >> 20} MiB, {int(limits[1]) / 1e9:g} CPU", style="dim")
    if limits != [str(64 << 20), "500000000"]:
        raise DemoFailure(f"expected 64 MiB and half a CPU on web, got {limits}")
    heading("5. scale the worker to three")
    app("up", "-d", "--scale", "worker=3")
    wait_for_readers(app, 3)
    heading("6. look at it")
    app("ps")
    app("logs", "--tail", "2", "worker")
    app("top", "web")
    heading("7. up again without changes: nothing is recreated")
    app("up", "-d", "--scale", "worker=3")
    heading("8. down, volume included")
    app("down", "-v")
    heading("9. nothing is left")
    names = skiff("ps", "-a", "--format", "{{.Names}}", show=False).split()
    volumes = skiff("volume", "ls", "-q", show=False).split()
    networks = skiff("network", "ls", "--format", "{{.Name}}", show=False).split()
    left = [n for n in (*names, *volumes, *networks) if n.startswith(PROJECT)]
    if left:
        raise DemoFailure(f"demo objects left behind: {left}")
    console.print("no skiff-demo containers, networks or volumes left")


def main() -> None:
    """Entry point of ``python -m skiff.demo [lab|compose]``."""
    if sys.argv[1:2] == ["compose"]:
        compose_main()
        return
    try:
        run_lab_demo()
    except (DemoFailure, OSError, subprocess.TimeoutExpired) as exc:
        console.print("[bold red]demo failed:[/]")
        console.print(str(exc), markup=False)
        try:  # clean up what the demo made
            lab_skiff("lab", "down", LAB, show=False, check=False)
        except (OSError, subprocess.TimeoutExpired):
            pass
        sys.exit(1)
    console.print("[bold green]demo complete.[/] The single-host part: make demo-compose")


def compose_main() -> None:
    """The compose application on one skiffd (``python -m skiff.demo compose``)."""
    try:
        run_demo()
    except (DemoFailure, OSError, subprocess.TimeoutExpired) as exc:
        console.print("[bold red]demo failed:[/]")
        console.print(str(exc), markup=False)
        try:  # clean up what the demo made
            skiff("compose", "-p", PROJECT, "down", "-v", "--remove-orphans", show=False, check=False)
        except (OSError, subprocess.TimeoutExpired):
            pass
        sys.exit(1)
    console.print("[bold green]demo complete.[/] skiffd keeps running, like docker's daemon.")


if __name__ == "__main__":
    main()
