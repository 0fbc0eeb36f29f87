"""k8s-file log reading: partial lines, filters, tail, following with rotation."""

from __future__ import annotations

import asyncio
from pathlib import Path

from skiff.runtime.logs import LogLine, follow_log, iter_log, parse_time
from skiff.runtime.runc import rfc3339_nano, runtime_message

T0 = "2024-01-02T03:04:05.000000001+00:00"
T1 = "2024-01-02T03:04:06.5+00:00"
T2 = "2024-01-02T03:04:07.000000000Z"


def write(path: Path, *lines: str) -> None:
    with open(path, "a") as f:
        for line in lines:
            f.write(line + "\n")


def test_parse_time_and_format_roundtrip() -> None:
    ns = parse_time(T0.encode())
    assert ns % 1_000_000_000 == 1
    assert rfc3339_nano(ns) == "2024-01-02T03:04:05.000000001Z"
    assert parse_time(T1.encode()) - ns == 1_499_999_999
    assert parse_time(b"2024-01-02T03:04:05+00:00") == ns - 1


def test_partial_lines_are_joined_per_stream(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    write(log, f"{T0} stdout P hel", f"{T0} stderr F err", f"{T1} stdout F lo", f"{T2} stdout F ")
    lines = list(iter_log(log))
    assert lines == [
        LogLine(parse_time(T0.encode()), "stderr", b"err\n"),
        LogLine(parse_time(T0.encode()), "stdout", b"hello\n"),
        LogLine(parse_time(T2.encode()), "stdout", b"\n"),
    ]


def test_filters_and_tail(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    write(log, f"{T0} stdout F a", f"{T1} stdout F b", f"{T2} stdout F c")
    since = parse_time(T1.encode())
    assert [x.data for x in iter_log(log, since_nano=since)] == [b"b\n", b"c\n"]
    assert [x.data for x in iter_log(log, until_nano=since)] == [b"a\n", b"b\n"]
    assert [x.data for x in iter_log(log, tail=1)] == [b"c\n"]
    assert list(iter_log(log, tail=0)) == []
    assert list(iter_log(tmp_path / "missing.log")) == []


def test_incomplete_last_line_waits(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    log.write_text(f"{T0} stdout F a\n{T1} stdout F b-not-finished")
    assert [x.data for x in iter_log(log)] == [b"a\n"]


def test_follow_sees_growth_and_truncation_without_duplicates(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    write(log, f"{T0} stdout F one")

    async def scenario() -> list[bytes]:
        stop = asyncio.Event()
        got: list[bytes] = []

        async def reader() -> None:
            async for line in follow_log(log, stop):
                got.append(line.data)

        task = asyncio.create_task(reader())
        await asyncio.sleep(0.15)
        write(log, f"{T1} stdout P tw", f"{T1} stdout F o")
        await asyncio.sleep(0.15)
        log.write_text("")  # conmon truncates when the log exceeds --log-size-max
        write(log, f"{T2} stderr F three")
        await asyncio.sleep(0.15)
        write(log, f"{T2} stdout F four")
        stop.set()
        await asyncio.wait_for(task, 5)
        return got

    assert asyncio.run(scenario()) == [b"one\n", b"two\n", b"three\n", b"four\n"]


def test_runtime_message_strips_logrus() -> None:
    text = 'time="2024" level=error msg="runc create failed: exec: \\"sh\\": not found"\n'
    assert runtime_message(text) == 'runc create failed: exec: "sh": not found'
    assert runtime_message("plain error\n") == "plain error"


def test_output_without_final_newline_is_shown(tmp_path: Path) -> None:
    """``printf abc``: conmon writes a P piece and no F; docker logs shows "abc" as it is."""
    log = tmp_path / "c.log"
    write(log, f"{T0} stdout F a", f"{T1} stdout P abc")
    assert [x.data for x in iter_log(log)] == [b"a\n", b"abc"]

    async def follow() -> list[bytes]:
        stop = asyncio.Event()
        stop.set()
        return [x.data async for x in follow_log(log, stop)]

    assert asyncio.run(follow()) == [b"a\n", b"abc"]
