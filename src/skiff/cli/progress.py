"""Show a progress JSON stream (pull, import, bootstrap) like docker: per-layer lines or rich bars."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn


def show_progress(messages: Iterator[dict[str, Any]], quiet: bool = False, err: bool = False) -> str | None:
    """Consume the stream; return the image id from an ``aux`` message if any.

    Errors inside the stream raise (the client maps ``errorDetail``); the caller exits 1.
    """
    stream = sys.stderr if err else sys.stdout
    if quiet:
        return _last_id(messages)
    if not stream.isatty():
        return _plain(messages, err)
    return _rich(messages, Console(file=stream))


def _last_id(messages: Iterator[dict[str, Any]]) -> str | None:
    image_id = None
    for msg in messages:
        image_id = _aux_id(msg) or image_id
    return image_id


def _aux_id(msg: dict[str, Any]) -> str | None:
    aux = msg.get("aux")
    if isinstance(aux, dict) and aux.get("ID"):
        return str(aux["ID"])
    return None


def _line(msg: dict[str, Any]) -> str:
    text = str(msg.get("status") or msg.get("stream") or "").rstrip("\n")
    if msg.get("id"):
        text = f"{msg['id']}: {text}"
    if msg.get("progress"):
        text = f"{text} {msg['progress']}"
    return text


def _plain(messages: Iterator[dict[str, Any]], err: bool) -> str | None:
    image_id = None
    for msg in messages:
        image_id = _aux_id(msg) or image_id
        # Byte-level progress is noise without a terminal to redraw on.
        if msg.get("progressDetail") and msg.get("status") in (
            "Downloading",
            "Extracting",
            "Importing",
            "Pushing",
        ):
            continue
        line = _line(msg)
        if line:
            click.echo(line, err=err)
    return image_id


def _rich(messages: Iterator[dict[str, Any]], console: Console) -> str | None:
    image_id = None
    tasks: dict[str, TaskID] = {}
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        for msg in messages:
            image_id = _aux_id(msg) or image_id
            ident = str(msg.get("id") or "")
            status = str(msg.get("status") or msg.get("stream") or "").rstrip("\n")
            if not ident or "progressDetail" not in msg:
                # Whole-operation lines ("v1: Pulling from x", "latest: digest: ..."): plain text.
                line = _line(msg)
                if line:
                    progress.console.print(line, highlight=False)
                continue
            detail = msg.get("progressDetail") or {}
            total = detail.get("total")
            if ident not in tasks:
                tasks[ident] = progress.add_task(f"{ident}: {status}", total=total or None)
            task = tasks[ident]
            progress.update(task, description=f"{ident}: {status}")
            if total:
                progress.update(task, total=total, completed=detail.get("current", 0))
            elif status.startswith(("Pull complete", "Download complete", "Already exists", "Done")):
                current = progress.tasks[task].total or 1
                progress.update(task, total=current, completed=current)
    return image_id
