"""docker-style output: sizes, durations, status strings, ps/images rows, tables."""

from __future__ import annotations

import pytest

from skiff.cli.format.rows import (
    IMAGES_TABLE,
    IMAGES_TITLES,
    PS_TABLE,
    PS_TITLES,
    ContainerRow,
    ellipsis,
    format_ports,
    image_rows,
    status_text,
)
from skiff.cli.format.table import render_rows, tabwrite
from skiff.units import human_duration, human_size, parse_rfc3339

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0B"),
        (999, "999B"),
        (1000, "1kB"),
        (4_261_234, "4.26MB"),
        (1_500_000_000, "1.5GB"),
        (123_456, "123kB"),
    ],
)
def test_human_size(size: int, text: str) -> None:
    assert human_size(size) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.2, "Less than a second"),
        (1, "1 second"),
        (5, "5 seconds"),
        (65, "About a minute"),
        (600, "10 minutes"),
        (3600, "About an hour"),
        (5 * 3600, "5 hours"),
        (3 * 86400, "3 days"),
        (21 * 86400, "3 weeks"),
        (90 * 86400, "3 months"),
        (3 * 365 * 86400, "3 years"),
    ],
)
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


def test_parse_rfc3339_with_nanoseconds() -> None:
    assert parse_rfc3339("2023-11-14T22:13:20.123456789Z") == pytest.approx(NOW + 0.123456789)
    assert parse_rfc3339("0001-01-01T00:00:00Z") is None


def _iso(ts: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.000000000Z")


@pytest.mark.parametrize(
    ("state", "text"),
    [
        ({"Status": "running", "StartedAt": _iso(NOW - 3)}, "Up 3 seconds"),
        (
            {"Status": "running", "StartedAt": _iso(NOW - 7200), "Health": {"Status": "healthy"}},
            "Up 2 hours (healthy)",
        ),
        (
            {"Status": "running", "StartedAt": _iso(NOW - 10), "Health": {"Status": "starting"}},
            "Up 10 seconds (health: starting)",
        ),
        ({"Status": "paused", "StartedAt": _iso(NOW - 60)}, "Up About a minute (Paused)"),
        ({"Status": "exited", "ExitCode": 0, "FinishedAt": _iso(NOW - 120)}, "Exited (0) 2 minutes ago"),
        ({"Status": "exited", "ExitCode": 137, "FinishedAt": _iso(NOW - 5)}, "Exited (137) 5 seconds ago"),
        ({"Status": "created"}, "Created"),
        ({"Status": "dead"}, "Dead"),
    ],
)
def test_status_text(state: dict[str, object], text: str) -> None:
    assert status_text(state, NOW) == text


def test_ellipsis_and_ports() -> None:
    assert ellipsis("sh -c 'sleep 1000; echo done'", 20) == "sh -c 'sleep 1000; …"
    assert ellipsis("short", 20) == "short"
    ports = [
        {"PrivatePort": 443, "Type": "tcp"},
        {"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
        {"IP": "::", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
    ]
    # docker's DisplayablePorts puts unpublished ports (and same-port mappings) before the others
    assert format_ports(ports) == "443/tcp, 0.0.0.0:8080->80/tcp, [::]:8080->80/tcp"


CONTAINER = {
    "Id": "0123456789abcdef" * 4,
    "Names": ["/web"],
    "Image": "busybox",
    "Command": "sh -c 'sleep 1000; echo done'",
    "Created": NOW - 5,
    "Ports": [{"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"}],
    "Labels": {"app": "web", "tier": "front"},
    "State": "running",
    "Status": "Up 3 seconds",
}


def test_ps_row_fields() -> None:
    row = ContainerRow(CONTAINER, now=NOW)
    assert row.ID == "0123456789ab"
    assert row.Command == '"sh -c \'sleep 1000; …"'
    assert row.RunningFor == "5 seconds ago"
    assert row.Names == "web"
    assert row.Label("app") == "web"
    assert row.Labels == "app=web,tier=front"
    assert row.CreatedAt == "2023-11-14 22:13:15 +0000 UTC"
    assert CONTAINER["Id"] == ContainerRow(CONTAINER, trunc=False).ID


def test_ps_table_matches_docker_layout() -> None:
    out = render_rows("", [ContainerRow(CONTAINER, now=NOW)], PS_TITLES, PS_TABLE)
    assert out.splitlines() == [
        "CONTAINER ID   IMAGE     COMMAND                  CREATED         STATUS         PORTS                  NAMES",
        '0123456789ab   busybox   "sh -c \'sleep 1000; …"   5 seconds ago   Up 3 seconds   0.0.0.0:8080->80/tcp   web',
    ]


def test_ps_custom_table_and_label_header() -> None:
    out = render_rows(
        'table {{.Names}}\t{{.Label "app"}}', [ContainerRow(CONTAINER, now=NOW)], PS_TITLES, PS_TABLE
    )
    assert out.splitlines() == ["NAMES     LABEL", "web       web"]


def test_ps_json_format() -> None:
    out = render_rows("json", [ContainerRow(CONTAINER, now=NOW)], PS_TITLES, PS_TABLE)
    assert '"Names":"web"' in out and '"ID":"0123456789ab"' in out


def test_images_rows_and_table() -> None:
    images = [
        {
            "Id": "sha256:" + "ab" * 32,
            "RepoTags": ["busybox:latest", "busybox:1.36"],
            "Created": NOW - 7200,
            "Size": 4_261_234,
        },
        {"Id": "sha256:" + "cd" * 32, "RepoTags": None, "Created": NOW - 86400 * 3, "Size": 1000},
    ]
    rows = image_rows(images, now=NOW)
    assert [(r.Repository, r.Tag) for r in rows] == [
        ("busybox", "latest"),
        ("busybox", "1.36"),
        ("<none>", "<none>"),
    ]
    out = render_rows("", rows, IMAGES_TITLES, IMAGES_TABLE)
    assert out.splitlines() == [
        "REPOSITORY   TAG       IMAGE ID       CREATED       SIZE",
        "busybox      latest    abababababab   2 hours ago   4.26MB",
        "busybox      1.36      abababababab   2 hours ago   4.26MB",
        "<none>       <none>    cdcdcdcdcdcd   3 days ago    1kB",
    ]


def test_registry_port_is_not_a_tag() -> None:
    rows = image_rows(
        [{"Id": "sha256:" + "0" * 64, "RepoTags": ["localhost:5000/app:v1"], "Created": NOW}], now=NOW
    )
    assert (rows[0].Repository, rows[0].Tag) == ("localhost:5000/app", "v1")


def test_tabwrite_pads_to_min_width_and_leaves_last_cell() -> None:
    # Column width = max(longest cell + 3 padding, 10); the last cell is never padded.
    expected = ["A".ljust(18) + "BB".ljust(10) + "C", "longer-than-ten   " + "x".ljust(10) + "y"]
    assert tabwrite("A\tBB\tC\nlonger-than-ten\tx\ty").split("\n") == expected
