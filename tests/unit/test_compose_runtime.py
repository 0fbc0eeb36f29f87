"""Compose runtime, pure parts: values, dependency graph, create bodies, config hash, plans,
log prefixes and the plain progress display (no daemon)."""

from __future__ import annotations

import io
import tarfile
import threading
import time
from typing import Any

import pytest

from skiff.client.streams import encode_frame
from skiff.compose import labels as L
from skiff.compose.convert import (
    Peer,
    ProjectInfo,
    config_hash,
    container_name,
    container_request,
    replicas,
)
from skiff.compose.graph import (
    HEALTHY,
    check_cycles,
    dependencies,
    graph,
    order,
    walk,
    with_dependencies,
    with_dependents,
)
from skiff.compose.logs import LogPrinter
from skiff.compose.mounts import InjectedFile, files_tar
from skiff.compose.observed import ObservedContainer, ObservedState
from skiff.compose.plan import FORCE, NEVER, PlanOptions, make_plan
from skiff.compose.progress import DONE, ProgressPrinter
from skiff.compose.values import duration_ns, duration_seconds, nano_cpus, size_bytes
from skiff.errors import InvalidArgument


def info(**kw: Any) -> ProjectInfo:
    base: dict[str, Any] = {
        "name": "demo",
        "working_dir": "/srv/demo",
        "config_files": ("/srv/demo/compose.yaml",),
        "networks": {"default": {"name": "demo_default"}, "back": {"name": "demo_back"}},
        "volumes": {"data": {"name": "demo_data"}},
        "secrets": {
            "token": {"name": "demo_token", "file": "/srv/demo/token.txt"},
            "inline": {"content": "s3cret"},
        },
        "configs": {"conf": {"name": "demo_conf", "file": "/srv/demo/app.conf"}},
        "environment": {},
    }
    base.update(kw)
    return ProjectInfo(**base)


# -- values ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("30s", 30 * 10**9),
        ("1m30s", 90 * 10**9),
        ("500ms", 5 * 10**8),
        ("1h", 3600 * 10**9),
        (5, 5 * 10**9),
        ("0", 0),
        ("1.5s", 15 * 10**8),
    ],
)
def test_durations(text: Any, ns: int) -> None:
    assert duration_ns(text) == ns


@pytest.mark.parametrize("bad", ["30", "abc", "1x", "s", True])
def test_bad_durations(bad: Any) -> None:
    with pytest.raises(InvalidArgument):
        duration_ns(bad)


def test_sizes_and_cpus() -> None:
    assert size_bytes("52428800") == 52428800
    assert size_bytes(1024) == 1024
    assert size_bytes("64m") == 64 << 20
    assert nano_cpus(0.5) == 500_000_000
    assert nano_cpus("1.25") == 1_250_000_000
    assert duration_seconds("1m30s") == 90
    with pytest.raises(InvalidArgument):
        size_bytes("lots")


# -- graph -------------------------------------------------------------------------------------
SERVICES: dict[str, dict[str, Any]] = {
    "db": {"image": "postgres"},
    "cache": {"image": "redis"},
    "web": {
        "image": "web",
        "depends_on": {"db": {"condition": "service_healthy", "required": True}},
        "links": ["cache:redis"],
    },
    "sidecar": {
        "image": "busybox",
        "network_mode": "service:web",
        "volumes_from": ["db:ro", "container:other"],
    },
}


def test_dependencies_include_links_network_mode_and_volumes_from() -> None:
    assert dependencies(SERVICES["web"])["db"].condition == HEALTHY
    assert set(dependencies(SERVICES["web"])) == {"db", "cache"}
    assert set(dependencies(SERVICES["sidecar"])) == {"web", "db"}
    assert graph(SERVICES)["sidecar"] == {"web", "db"}


def test_order_and_closures() -> None:
    edges = graph(SERVICES)
    seq = order(edges)
    assert seq.index("db") < seq.index("web") < seq.index("sidecar")
    assert with_dependencies(SERVICES, ["web"]) == {"web", "db", "cache"}
    assert with_dependents(SERVICES, ["db"]) == {"db", "web", "sidecar"}


def test_cycles_are_named() -> None:
    services = {"a": {"depends_on": {"b": None}}, "b": {"links": ["a"]}}
    with pytest.raises(InvalidArgument, match="dependency cycle detected: a -> b -> a"):
        check_cycles(services)


def test_unknown_condition_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="unknown condition"):
        dependencies({"depends_on": {"db": {"condition": "service_ready"}}})


def test_walk_runs_dependencies_first_and_independent_ones_together() -> None:
    edges = {"db": set(), "cache": set(), "web": {"db", "cache"}}
    both = threading.Barrier(2, timeout=5)
    done: list[str] = []

    def fn(name: str) -> None:
        if name in ("db", "cache"):
            both.wait()  # only passes if db and cache run at the same time
        done.append(name)

    walk(edges, fn)
    assert done[-1] == "web"
    rev: list[str] = []
    walk(edges, rev.append, reverse=True)
    assert rev[0] == "web"


def test_walk_stops_scheduling_after_a_failure() -> None:
    edges = {"db": set(), "web": {"db"}}
    ran: list[str] = []

    def fn(name: str) -> None:
        ran.append(name)
        if name == "db":
            raise InvalidArgument("db failed")

    with pytest.raises(InvalidArgument, match="db failed"):
        walk(edges, fn)
    assert ran == ["db"]


# -- create bodies ------------------------------------------------------------------------------
WEB: dict[str, Any] = {
    "image": "busybox:latest",
    "command": ["httpd", "-f", "-p", "8080"],
    "environment": {"MODE": "prod", "UNSET": None},
    "ports": [
        {"mode": "ingress", "target": 8080, "published": "18080", "protocol": "tcp", "host_ip": "127.0.0.1"}
    ],
    "expose": ["9000-9001/udp"],
    "volumes": [
        {"type": "volume", "source": "data", "target": "/data", "volume": {"nocopy": True}},
        {
            "type": "bind",
            "source": "/srv/demo/html",
            "target": "/www",
            "read_only": True,
            "bind": {"create_host_path": True},
        },
        {"type": "volume", "target": "/cache"},
        {"type": "tmpfs", "target": "/run/t", "tmpfs": {"size": 1048576}},
    ],
    "networks": {"default": None, "back": {"aliases": ["api"], "ipv4_address": "10.9.0.5"}},
    "healthcheck": {
        "test": ["CMD", "true"],
        "interval": "2s",
        "timeout": "1s",
        "retries": 3,
        "start_period": "1m",
    },
    "restart": "on-failure:3",
    "deploy": {"replicas": 2, "resources": {"limits": {"cpus": 0.5, "memory": 67108864, "pids": 100}}},
    "ulimits": {"nofile": {"soft": 1024, "hard": 2048}, "nproc": 512},
    "extra_hosts": ["gw=10.0.0.1"],
    "labels": {"team": "a"},
    "links": ["db:database"],
    "secrets": [
        {"source": "token", "target": "/run/secrets/token"},
        {"source": "inline", "target": "inline"},
    ],
    "configs": [{"source": "conf"}],
    "stop_grace_period": "1m30s",
    "cap_add": ["NET_ADMIN"],
    "init": True,
    "depends_on": {"db": {"condition": "service_started", "required": True}},
}


def test_container_request_matches_compose() -> None:
    req = container_request(
        info(), "web", WEB, 1, peers={"db": [Peer("demo-db-1", "d" * 64)]}, image_id="sha256:abc"
    )
    b = req.body
    assert req.name == "demo-web-1"
    assert b["Image"] == "busybox:latest"
    assert b["Cmd"] == ["httpd", "-f", "-p", "8080"]
    assert b["Env"] == ["MODE=prod", "UNSET"]
    assert b["ExposedPorts"] == {"8080/tcp": {}, "9000/udp": {}, "9001/udp": {}}
    assert b["StopTimeout"] == 90
    assert b["Healthcheck"] == {
        "Test": ["CMD", "true"],
        "Interval": 2 * 10**9,
        "Timeout": 10**9,
        "StartPeriod": 60 * 10**9,
        "Retries": 3,
    }
    labels = b["Labels"]
    assert labels["team"] == "a"
    assert labels[L.PROJECT] == "demo" and labels[L.SERVICE] == "web" and labels[L.CONTAINER_NUMBER] == "1"
    assert labels[L.ONEOFF] == "False" and labels[L.IMAGE] == "sha256:abc"
    assert labels[L.CONFIG_HASH] == config_hash(WEB)
    assert labels[L.WORKING_DIR] == "/srv/demo" and labels[L.CONFIG_FILES] == "/srv/demo/compose.yaml"
    assert labels[L.DEPENDS_ON] == "db:service_started:false"
    h = b["HostConfig"]
    assert h["PortBindings"] == {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18080"}]}
    assert h["Binds"] == ["demo_data:/data:rw,nocopy", "/srv/demo/html:/www:ro"]
    assert {"Type": "volume", "Target": "/cache", "ReadOnly": False} in h["Mounts"]
    assert {
        "Type": "tmpfs",
        "Target": "/run/t",
        "ReadOnly": False,
        "TmpfsOptions": {"SizeBytes": 1048576},
    } in h["Mounts"]
    assert {
        "Type": "bind",
        "Source": "/srv/demo/token.txt",
        "Target": "/run/secrets/token",
        "ReadOnly": True,
    } in h["Mounts"]
    assert {"Type": "bind", "Source": "/srv/demo/app.conf", "Target": "/conf", "ReadOnly": True} in h[
        "Mounts"
    ]
    assert req.files == [InjectedFile("/run/secrets/inline", b"s3cret", 0o444)]
    assert h["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert h["NanoCpus"] == 500_000_000 and h["Memory"] == 64 << 20 and h["PidsLimit"] == 100
    assert h["Ulimits"] == [
        {"Name": "nofile", "Soft": 1024, "Hard": 2048},
        {"Name": "nproc", "Soft": 512, "Hard": 512},
    ]
    assert h["ExtraHosts"] == ["gw:10.0.0.1"]
    assert h["Links"] == ["demo-db-1:database", "demo-db-1:demo-db-1"]
    assert h["CapAdd"] == ["NET_ADMIN"] and h["Init"] is True
    # One network at create (API 1.41), the other connected afterwards; aliases as Compose.
    # (equal priorities: by name, as compose-go's NetworksByPriority)
    assert h["NetworkMode"] == "demo_back"
    ep = b["NetworkingConfig"]["EndpointsConfig"]["demo_back"]
    assert ep["Aliases"] == ["demo-web-1", "web", "api"]
    assert ep["IPAMConfig"] == {"IPv4Address": "10.9.0.5"}
    assert req.connect == [("demo_default", {"Aliases": ["demo-web-1", "web"], "Links": h["Links"]})]


def test_one_off_request_has_no_number_and_no_service_alias() -> None:
    svc = {"image": "busybox", "command": ["true"]}
    req = container_request(
        info(), "web", svc, None, peers={}, name="demo-web-run-abc", oneoff=True, service_alias=False
    )
    labels = req.body["Labels"]
    assert labels[L.ONEOFF] == "True" and L.CONTAINER_NUMBER not in labels
    assert req.body["NetworkingConfig"]["EndpointsConfig"]["demo_default"]["Aliases"] == ["demo-web-run-abc"]


def test_network_mode_service_joins_the_first_container() -> None:
    svc = {"image": "busybox", "network_mode": "service:web", "volumes_from": ["db:ro"]}
    peers = {"web": [Peer("demo-web-1", "w" * 64)], "db": [Peer("demo-db-1", "d" * 64)]}
    b = container_request(info(), "side", svc, 1, peers=peers).body
    assert b["HostConfig"]["NetworkMode"] == "container:" + "w" * 64
    assert b["HostConfig"]["VolumesFrom"] == ["d" * 64 + ":ro"]
    assert "NetworkingConfig" not in b
    with pytest.raises(InvalidArgument, match="no container"):
        container_request(info(), "side", svc, 1, peers={})


def test_undefined_secret_and_network_are_refused() -> None:
    with pytest.raises(InvalidArgument, match="not defined"):
        container_request(info(), "web", {"image": "x", "secrets": [{"source": "nope"}]}, 1, peers={})
    with pytest.raises(InvalidArgument, match="undefined network"):
        container_request(info(), "web", {"image": "x", "networks": {"nope": None}}, 1, peers={})


def test_build_only_service_gets_the_project_image_name_and_container_names() -> None:
    svc = {"build": {"context": "/srv/demo"}}
    assert container_request(info(), "app", svc, 3, peers={}).body["Image"] == "demo-app"
    assert container_name("demo", "app", svc, 3) == "demo-app-3"
    assert container_name("demo", "app", {"container_name": "custom"}, 1) == "custom"


def test_config_hash_ignores_scale_build_and_dependencies() -> None:
    base = {"image": "busybox", "command": ["sleep", "1"], "deploy": {"replicas": 1}}
    same = {
        **base,
        "deploy": {"replicas": 5},
        "build": {"context": "/x"},
        "depends_on": {"db": {}},
        "scale": 3,
    }
    assert config_hash(base) == config_hash(same)
    assert config_hash(base) != config_hash({**base, "command": ["sleep", "2"]})
    assert config_hash({"a": 1, "b": 2}) == config_hash({"b": 2, "a": 1})
    assert replicas(same) == 5 and replicas({"scale": 3}) == 3 and replicas({}) == 1


def test_files_tar_holds_parents_and_modes() -> None:
    data = files_tar([InjectedFile("/run/secrets/a", b"x", 0o400)])
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        members = {m.name: m for m in tf.getmembers()}
    assert members["run"].isdir() and members["run/secrets"].isdir()
    assert members["run/secrets/a"].mode == 0o400 and members["run/secrets/a"].size == 1


# -- plans ---------------------------------------------------------------------------------------
def observed_container(
    service: str, number: int, svc: dict[str, Any], state: str = "running", **kw: Any
) -> ObservedContainer:
    labels = {
        L.PROJECT: "demo",
        L.SERVICE: service,
        L.CONTAINER_NUMBER: str(number),
        L.CONFIG_HASH: config_hash(svc),
    }
    labels.update(kw.pop("labels", {}))
    return ObservedContainer(
        id=f"{service}{number}".ljust(64, "0"),
        name=f"demo-{service}-{number}",
        service=service,
        number=number,
        oneoff=False,
        config_hash=labels[L.CONFIG_HASH],
        image_label=kw.pop("image", ""),
        state=state,
        created=number,
        labels=labels,
    )


def plan_of(
    wanted: dict[str, Any], containers: list[ObservedContainer], fresh: bool = False, **opts: Any
) -> list[str]:
    state = ObservedState("demo", networks={} if fresh else {"demo_default": {}})
    for c in containers:
        state.containers.setdefault(c.service, []).append(c)
    image_ids = opts.pop("image_ids", {})
    return make_plan(
        "demo", wanted, {"default": {"name": "demo_default"}}, {}, state, image_ids, PlanOptions(**opts)
    ).describe()


DB = {"image": "postgres"}
APP = {"image": "busybox", "command": ["sleep", "1d"], "depends_on": {"db": {"condition": "service_started"}}}


def test_nothing_to_do_when_everything_matches() -> None:
    containers = [observed_container("db", 1, DB), observed_container("app", 1, APP)]
    assert plan_of({"db": DB, "app": APP}, containers) == []


def test_fresh_project_creates_network_and_containers_in_dependency_order() -> None:
    assert plan_of({"db": DB, "app": APP}, [], fresh=True) == [
        "create network demo_default",
        "create db#1",
        "create app#1",
    ]


def test_only_the_changed_service_is_recreated() -> None:
    containers = [observed_container("db", 1, DB), observed_container("app", 1, APP)]
    changed = {**APP, "command": ["sleep", "2d"]}
    assert plan_of({"db": DB, "app": changed}, containers) == ["recreate demo-app-1 (configuration changed)"]


def test_new_image_recreates() -> None:
    containers = [observed_container("db", 1, DB, image="sha256:old")]
    assert plan_of({"db": DB}, containers, image_ids={"db": "sha256:new"}) == [
        "recreate demo-db-1 (image changed)"
    ]


def test_force_and_never() -> None:
    containers = [observed_container("db", 1, DB), observed_container("app", 1, APP)]
    assert plan_of({"db": DB, "app": APP}, containers, recreate=FORCE, recreate_deps=FORCE) == [
        "recreate demo-db-1 (forced)",
        "recreate demo-app-1 (forced)",
    ]
    # --force-recreate app: only the named service
    assert plan_of({"db": DB, "app": APP}, containers, services=("app",), recreate=FORCE) == [
        "recreate demo-app-1 (forced)"
    ]
    changed = {**APP, "command": ["other"]}
    assert plan_of({"db": DB, "app": changed}, containers, recreate=NEVER) == []


def test_scale_up_numbers_after_the_highest_and_down_removes_the_highest() -> None:
    containers = [observed_container("app", 1, APP), observed_container("app", 3, APP)]
    svc = {"app": {**APP, "depends_on": {}}}
    assert plan_of(svc, containers, scale={"app": 4}) == ["create app#4", "create app#5"]
    assert plan_of(svc, containers, scale={"app": 1}) == ["remove demo-app-3 (scale down)"]
    assert plan_of(svc, containers, scale={"app": 0}) == [
        "remove demo-app-1 (scale down)",
        "remove demo-app-3 (scale down)",
    ]


def test_scale_down_removes_obsolete_containers_first() -> None:
    old = observed_container("app", 1, {"image": "old"})
    new = observed_container("app", 2, {**APP, "depends_on": {}})
    assert plan_of({"app": {**APP, "depends_on": {}}}, [old, new], scale={"app": 1}) == [
        "remove demo-app-1 (scale down)"
    ]


def test_stopped_containers_are_started() -> None:
    containers = [observed_container("db", 1, DB, state="exited")]
    assert plan_of({"db": DB}, containers) == ["start demo-db-1 (not running)"]


def test_recreating_a_namespace_parent_recreates_its_users() -> None:
    side = {"image": "busybox", "network_mode": "service:db"}
    containers = [observed_container("db", 1, DB), observed_container("side", 1, side)]
    assert plan_of({"db": {**DB, "command": ["x"]}, "side": side}, containers) == [
        "recreate demo-db-1 (configuration changed)",
        "recreate demo-side-1 (a service it joins is recreated)",
    ]


def test_container_name_cannot_scale() -> None:
    with pytest.raises(InvalidArgument, match="custom container name"):
        plan_of({"db": {**DB, "container_name": "x"}}, [], scale={"db": 2})


def test_orphans_are_removed_only_when_asked() -> None:
    state = ObservedState("demo", networks={"demo_default": {}})
    state.orphans.append(observed_container("gone", 1, DB))
    args = ("demo", {"db": DB}, {}, {}, state, {})
    assert make_plan(*args, PlanOptions()).orphans == []
    assert make_plan(*args, PlanOptions(remove_orphans=True)).describe()[-1] == "remove orphan demo-gone-1"


def test_external_and_declared_volumes() -> None:
    svc = {
        "image": "x",
        "volumes": [
            {"type": "volume", "source": "data", "target": "/d"},
            {"type": "volume", "source": "ext", "target": "/e"},
        ],
    }
    state = ObservedState("demo", networks={"demo_default": {}})
    volumes = {"data": {"name": "demo_data"}, "ext": {"name": "shared", "external": True}}
    plan = make_plan("demo", {"app": svc}, {}, volumes, state, {}, PlanOptions())
    assert [(v.name, v.external) for v in plan.volumes] == [("demo_data", False), ("shared", True)]
    state.volumes["demo_data"] = {}
    plan = make_plan("demo", {"app": svc}, {}, volumes, state, {}, PlanOptions())
    assert [(v.name, v.external) for v in plan.volumes] == [("shared", True)]


# -- output -----------------------------------------------------------------------------------
def test_log_prefixes_are_padded_and_partial_lines_joined() -> None:
    out = io.StringIO()
    p = LogPrinter(out)
    p.register(["web-1", "worker-10"])
    chunks = [
        encode_frame(1, b"hel"),
        encode_frame(1, b"lo\nsecond"),
        encode_frame(2, b" line\n"),
        encode_frame(1, b"\n"),
    ]
    p.consume("web-1", chunks, tty=False)
    assert out.getvalue().splitlines() == ["web-1      | hello", "web-1      |  line", "web-1      | second"]


def test_log_colours_follow_compose_rainbow() -> None:
    out = io.StringIO()
    p = LogPrinter(out, color=True)
    p.register(["a-1", "b-1"])
    p.line("b-1", "x")
    assert out.getvalue() == "\x1b[33mb-1  | \x1b[0mx\n"


def test_plain_progress_lines() -> None:
    out = io.StringIO()
    with ProgressPrinter("plain", stream=out) as pr:
        pr.event("Container", "demo-web-1", "Starting")
        pr.event("Container", "demo-web-1", "Started", DONE)
    assert out.getvalue().splitlines() == [
        " Container demo-web-1  Starting",
        "✔ Container demo-web-1  Started",
    ]


def test_tty_progress_ends_with_final_state() -> None:
    out = io.StringIO()
    with ProgressPrinter("tty", stream=out) as pr:
        pr.event("Network", "demo_default", "Created", DONE)
        time.sleep(0)
    assert (
        "✔" in out.getvalue() and "Network demo_default" in out.getvalue() and "Running 1/1" in out.getvalue()
    )


# -- command-line helpers and label-only views --------------------------------------------------
def test_scale_flags() -> None:
    import click

    from skiff.cli.compose import parse_scale

    assert parse_scale(("web=3", "db=0")) == {"web": 3, "db": 0}
    for bad in ("web", "=2", "web=x", "web=-1"):
        with pytest.raises(click.BadParameter):
            parse_scale((bad,))


def test_run_flags_in_long_syntax() -> None:
    from skiff.cli.compose_run import _short_port, _short_volume

    assert _short_volume("data:/d:ro", "/p") == {
        "type": "volume",
        "source": "data",
        "target": "/d",
        "read_only": True,
    }
    bind = _short_volume("./x:/x", "/p")
    assert bind["type"] == "bind" and bind["source"] == "/p/x" and bind["read_only"] is False
    assert _short_volume("/anon", "/p") == {"type": "volume", "target": "/anon"}
    assert _short_port("8080:80/udp") == {"published": "8080", "target": 80, "protocol": "udp"}
    assert _short_port("127.0.0.1:8080:80") == {
        "host_ip": "127.0.0.1",
        "published": "8080",
        "target": 80,
        "protocol": "tcp",
    }


def test_stop_order_from_depends_on_labels_without_a_file() -> None:
    from skiff.compose.ops import _edges_from_labels

    web = observed_container(
        "web", 1, {}, labels={L.DEPENDS_ON: "db:service_healthy:false,cache:service_started:false"}
    )
    db = observed_container("db", 1, {}, labels={L.DEPENDS_ON: ""})
    assert _edges_from_labels([web, db]) == {"web": {"db"}, "db": set()}  # cache has no container


class _Containers:
    """Just ``containers()``: the one call ``compose ls`` makes."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    def containers(self, **_: Any) -> list[dict[str, Any]]:
        return self.rows


def test_ls_counts_states_per_project() -> None:
    from skiff.compose.ops import list_projects

    def row(project: str, state: str) -> dict[str, Any]:
        return {"State": state, "Labels": {L.PROJECT: project, L.CONFIG_FILES: f"/{project}/compose.yaml"}}

    client: Any = _Containers(
        [row("a", "running"), row("a", "exited"), row("a", "running"), row("b", "exited")]
    )
    assert [(p.name, p.status) for p in list_projects(client)] == [("a", "exited(1), running(2)")]
    assert [p.name for p in list_projects(client, all_=True)] == ["a", "b"]


def test_attached_wait_returns_the_chosen_exit_code() -> None:
    from skiff.compose.attach import AttachedSession, Exit
    from skiff.compose.executor import Started

    session = AttachedSession(Any, "p", {}, LogPrinter(io.StringIO()))  # type: ignore[arg-type]
    a, b = Started("a" * 64, "p-a-1", "a"), Started("b" * 64, "p-b-1", "b")
    session.exits.put(Exit(a, 0))
    session.exits.put(Exit(b, 5))
    assert session.wait(abort_on_exit=True) == (0, True)  # the first exit aborts
    session.exits.put(Exit(a, 0))
    session.exits.put(Exit(b, 5))
    assert session.wait(exit_code_from="b") == (5, True)
    assert session.wait() == (0, False)  # nothing attached: returns at once
