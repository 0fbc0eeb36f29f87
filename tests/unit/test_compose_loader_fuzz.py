"""Any file the schema accepts loads or fails with InvalidArgument (a clear message), never a crash.

Documents are generated from skiff's own compose schema (``loader_schema``), with string
values drawn from the short syntaxes compose users write, so most of them get past the
schema and exercise the canonical transforms, merging and normalization.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skiff.compose import loader_schema as S
from skiff.compose.loader import load_project
from skiff.errors import InvalidArgument

_STRINGS = st.sampled_from(
    [
        "web", "db", "data", "x", "", "8080:80", "127.0.0.1:80:80/udp", "3000-3001", "./dir:/c:ro", "data:/d",
        "/anon", "~/h:/h", "1m30s", "10s", "0", "64m", "1g", "0755", "service:db", "host", "A=1", "A",
        "${X}", "$$", "${X:-d}", "echo hi", "CMD-SHELL", "/run/x", "service_started", "a:b:c:d", "1.5",
    ]
)  # fmt: skip
_NAMES = st.sampled_from(["web", "db", "data", "front", "default", "A", "x-e"])


def _strategy(schema: dict[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
    if "oneOf" in schema:
        return st.one_of([_strategy(s, depth) for s in schema["oneOf"]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    types = schema.get("type", ["string", "integer", "object"])
    types = types if isinstance(types, list) else [types]
    options: list[st.SearchStrategy[Any]] = []
    for t in types:
        if t == "string":
            options.append(_STRINGS)
        elif t == "integer":
            options.append(st.integers(-2, 70000))
        elif t == "number":
            options.append(st.one_of(st.integers(0, 100), st.floats(0, 4)))
        elif t == "boolean":
            options.append(st.booleans())
        elif t == "null":
            options.append(st.none())
        elif t == "array" and depth < 4:
            options.append(
                st.lists(_strategy(schema.get("items", {"type": "string"}), depth + 1), max_size=3)
            )
        elif t == "object" and depth < 4:
            props = schema.get("properties", {})
            if props:
                keys = sorted(props)
                options.append(
                    st.lists(st.sampled_from(keys), max_size=4, unique=True).flatmap(
                        lambda ks, props=props: st.fixed_dictionaries(
                            {k: _strategy(props[k], depth + 1) for k in ks}
                        )
                    )
                )
            else:
                pattern = next(iter(schema.get("patternProperties", {}).values()), {"type": "string"})
                options.append(st.dictionaries(_NAMES, _strategy(pattern, depth + 1), max_size=3))
    return st.one_of(options) if options else st.none()


_SERVICE = _strategy(S.SERVICE)
_DOC = st.fixed_dictionaries(
    {"services": st.dictionaries(st.sampled_from(["web", "db"]), _SERVICE, min_size=1, max_size=2)},
    optional={
        "volumes": st.just({"data": None}),
        "networks": st.dictionaries(_NAMES, _strategy(S.NETWORK), max_size=2),
    },
)


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(_DOC, _DOC)
def test_schema_valid_files_load_or_fail_cleanly(tmp_path_factory: Any, first: Any, second: Any) -> None:
    root: Path = tmp_path_factory.mktemp("fuzz")
    (root / "a.yaml").write_text(yaml.safe_dump(first))
    (root / "b.yaml").write_text(yaml.safe_dump(second))
    try:
        project = load_project([root / "a.yaml", root / "b.yaml"], None, "p", {"X": "1"}, [], cwd=root)
    except InvalidArgument as e:
        assert str(e)
        return
    project.to_json()
    project.to_yaml()
