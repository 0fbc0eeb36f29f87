"""The Dockerfile parser against a corpus: ``tests/unit/dockerfiles/<case>.Dockerfile``.

Each valid case has ``<case>.json``, the parsed instructions as :func:`describe` writes them
(values as written: variables are expanded later, by the builder); each invalid case has
``<case>.error``, the whole message the build would answer with (file, line, what is wrong).
A case with neither, or with both, fails: the corpus cannot silently lose its expectations.

After a deliberate change to the parser, ``SKIFF_CORPUS_WRITE=1 pytest <this file>`` rewrites
the ``.json`` files; review their diff as you would code.
"""

from __future__ import annotations

import json
import os
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from skiff.build.instructions import Dockerfile, Instruction, parse_dockerfile
from skiff.build.parser import DockerfileError

CORPUS = Path(__file__).parent / "dockerfiles"
CASES = sorted(p.name.removesuffix(".Dockerfile") for p in CORPUS.glob("*.Dockerfile"))


def describe_instruction(instruction: Instruction) -> dict[str, Any]:
    """An instruction as plain JSON: keyword, lines, its typed fields, here-documents."""
    node = instruction.node
    out: dict[str, Any] = {"keyword": instruction.keyword, "lines": [node.line, node.end_line]}
    for f in fields(instruction):
        if f.name != "node":
            out[f.name.rstrip("_")] = getattr(instruction, f.name)
    if node.heredocs:
        out["heredocs"] = [{"name": h.name, "content": h.content, "expand": h.expand} for h in node.heredocs]
    return out


def describe(df: Dockerfile) -> dict[str, Any]:
    """A parsed Dockerfile as plain JSON (tuples become lists)."""
    doc = {
        "escape": df.escape,
        "warnings": list(df.warnings),
        "meta_args": [describe_instruction(a) for a in df.meta_args],
        "stages": [
            {
                "index": s.index,
                "name": s.name,
                "from": describe_instruction(s.from_),
                "instructions": [describe_instruction(i) for i in s.instructions],
            }
            for s in df.stages
        ],
    }
    result: dict[str, Any] = json.loads(json.dumps(doc))
    return result


def test_the_corpus_has_valid_and_invalid_cases() -> None:
    valid = [c for c in CASES if (CORPUS / f"{c}.json").exists()]
    invalid = [c for c in CASES if (CORPUS / f"{c}.error").exists()]
    assert len(valid) >= 10 and len(invalid) >= 10
    strays = {p.stem for p in CORPUS.iterdir() if p.suffix in (".json", ".error")} - set(CASES)
    assert not strays, f"expectations without a Dockerfile: {sorted(strays)}"


@pytest.mark.parametrize("case", CASES)
def test_corpus_case(case: str) -> None:
    text = (CORPUS / f"{case}.Dockerfile").read_bytes().decode("utf-8")
    expected_json = CORPUS / f"{case}.json"
    expected_error = CORPUS / f"{case}.error"
    if os.environ.get("SKIFF_CORPUS_WRITE") == "1" and not expected_error.exists():
        expected_json.write_text(
            json.dumps(describe(parse_dockerfile(text)), indent=2, ensure_ascii=False) + "\n"
        )
    assert expected_json.exists() != expected_error.exists(), f"{case}: needs exactly one of .json / .error"
    if expected_error.exists():
        with pytest.raises(DockerfileError) as info:
            parse_dockerfile(text)
        assert info.value.message == expected_error.read_text().rstrip("\n")
        assert info.value.status == 400
        return
    assert describe(parse_dockerfile(text)) == json.loads(expected_json.read_text())
