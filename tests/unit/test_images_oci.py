"""OCI image config JSON: canonical form, round trip, chain IDs."""

from __future__ import annotations

import hashlib
import json

import pytest

from skiff.errors import InvalidArgument
from skiff.images.oci import ConfigDocument, build_config, chain_id, chain_ids, parse_config
from skiff.types.container import HealthConfig
from skiff.types.image import HistoryEntry, ImageConfig

L1 = "sha256:" + "1" * 64
L2 = "sha256:" + "2" * 64
L3 = "sha256:" + "3" * 64


def _doc(config: ImageConfig, **kw: object) -> ConfigDocument:
    base: dict[str, object] = {
        "config": config,
        "diff_ids": (L1, L2),
        "history": (HistoryEntry(created="2024-01-01T00:00:00Z", created_by="x"),),
        "created": "2024-01-01T00:00:00Z",
        "author": "",
        "comment": "",
        "architecture": "amd64",
        "os": "linux",
        "parent": "",
    }
    base.update(kw)
    return ConfigDocument(**base)  # type: ignore[arg-type]


def test_chain_ids_follow_the_spec() -> None:
    c2 = "sha256:" + hashlib.sha256(f"{L1} {L2}".encode()).hexdigest()
    c3 = "sha256:" + hashlib.sha256(f"{c2} {L3}".encode()).hexdigest()
    assert chain_ids([L1, L2, L3]) == [L1, c2, c3]
    assert chain_id(None, L1) == L1
    assert chain_id(c2, L3) == c3
    assert chain_ids([]) == []


def test_canonical_form_is_sorted_compact_and_stable() -> None:
    cfg = ImageConfig(cmd=("sh",), env=("PATH=/bin",), labels={"b": "2", "a": "1"}, exposed_ports=("80/tcp",))
    blob = build_config(_doc(cfg))
    text = blob.decode()
    assert " " not in text.replace("2024-01-01T00:00:00Z", "")  # no insignificant whitespace
    assert text.startswith(
        '{"architecture":"amd64","config":{"Cmd":["sh"],"Env":["PATH=/bin"],"ExposedPorts":'
    )
    assert '"Labels":{"a":"1","b":"2"}' in text
    assert '"rootfs":{"diff_ids":["' + L1 + '","' + L2 + '"],"type":"layers"}' in text
    obj = json.loads(blob)
    assert json.dumps(obj, sort_keys=True, separators=(",", ":")).encode() == blob
    assert build_config(_doc(cfg)) == blob  # same input, same bytes, same image ID


def test_unset_fields_are_omitted_but_empty_cmd_is_kept() -> None:
    obj = json.loads(build_config(_doc(ImageConfig())))
    assert obj["config"] == {}
    assert "author" not in obj
    assert "comment" not in obj
    obj = json.loads(build_config(_doc(ImageConfig(cmd=()))))
    assert obj["config"] == {"Cmd": []}


def test_round_trip() -> None:
    cfg = ImageConfig(
        user="1:2",
        env=("A=1",),
        entrypoint=("/init",),
        cmd=("run",),
        working_dir="/w",
        exposed_ports=("53/udp", "80/tcp"),
        volumes=("/data",),
        labels={"k": "v"},
        stop_signal="SIGINT",
        healthcheck=HealthConfig(test=("CMD", "true"), interval=1_000_000_000, retries=3),
        shell=("/bin/bash", "-c"),
        on_build=("RUN x",),
    )
    doc = _doc(cfg, author="me", comment="c", parent="sha256:" + "f" * 64)
    assert parse_config(build_config(doc)) == doc


def test_parse_docker_style_config() -> None:
    blob = json.dumps(
        {
            "architecture": "arm64",
            "os": "linux",
            "config": {"Cmd": ["sh"], "Env": None, "Labels": None, "ExposedPorts": {"80/tcp": {}}},
            "rootfs": {"type": "layers", "diff_ids": [L1]},
        }
    ).encode()
    doc = parse_config(blob)
    assert doc.config == ImageConfig(cmd=("sh",), exposed_ports=("80/tcp",))
    assert doc.architecture == "arm64"
    assert doc.diff_ids == (L1,)


@pytest.mark.parametrize("blob", [b"not json", b"[]", b'{"config":{"Cmd":"sh"}}'])
def test_parse_rejects_garbage(blob: bytes) -> None:
    with pytest.raises(InvalidArgument):
        parse_config(blob)
