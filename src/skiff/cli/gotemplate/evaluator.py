"""Execute a parsed template against data (JSON-shaped dicts or formatter objects).

Data model: dicts are Go maps (a missing key gives ``<no value>``); other objects
expose fields as attributes, and callable attributes are Go methods taking the
remaining arguments (``{{.Label "k"}}``). Values print as Go's ``fmt`` prints them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from skiff.cli.gotemplate.functions import FUNCTIONS, go_str, truth
from skiff.cli.gotemplate.parser import Node, Operand, Pipeline, parse
from skiff.errors import InvalidArgument


class TemplateError(InvalidArgument):
    """The template failed while executing (bad field, wrong argument types)."""


class _Missing:
    """Go's "no value" for a missing map key."""

    def __repr__(self) -> str:
        return "<no value>"


MISSING = _Missing()


class _Scope:
    def __init__(self, root: Any) -> None:
        self.frames: list[dict[str, Any]] = [{"$": root}]

    def lookup(self, name: str) -> Any:
        for frame in reversed(self.frames):
            if name in frame:
                return frame[name]
        raise TemplateError(f"template: undefined variable: {name}")

    def assign(self, name: str, value: Any) -> None:
        for frame in reversed(self.frames):
            if name in frame:
                frame[name] = value
                return
        raise TemplateError(f"template: undefined variable: {name}")


class Template:
    """A parsed template; ``execute(data)`` renders it."""

    def __init__(self, source: str, funcs: Mapping[str, Callable[..., Any]] | None = None) -> None:
        self.source = source
        self.nodes = parse(source)
        self.funcs: dict[str, Callable[..., Any]] = dict(FUNCTIONS)
        if funcs:
            self.funcs.update(funcs)

    def execute(self, data: Any) -> str:
        """Render with ``data`` as dot."""
        out: list[str] = []
        self._walk(self.nodes, data, _Scope(data), out)
        return "".join(out)

    # -- nodes ------------------------------------------------------------------------------
    def _walk(self, nodes: list[Node], dot: Any, scope: _Scope, out: list[str]) -> None:
        for node in nodes:
            if node.kind == "text":
                out.append(node.text)
            elif node.kind == "action":
                assert node.pipe is not None
                value = self._pipeline(node.pipe, dot, scope)
                if not node.pipe.decl:
                    out.append(go_str(value))
            else:
                self._block(node, dot, scope, out)

    def _block(self, node: Node, dot: Any, scope: _Scope, out: list[str]) -> None:
        assert node.pipe is not None
        scope.frames.append({})
        try:
            if node.kind == "range":
                self._range(node, dot, scope, out)
                return
            value = self._pipeline(node.pipe, dot, scope)
            if truth(value):
                self._walk(node.body, value if node.kind == "with" else dot, scope, out)
            else:
                self._walk(node.else_body, dot, scope, out)
        finally:
            scope.frames.pop()

    def _range(self, node: Node, dot: Any, scope: _Scope, out: list[str]) -> None:
        assert node.pipe is not None
        decl = node.pipe.decl
        # Range declares its own loop variables; evaluate the pipeline without them.
        value = self._commands(node.pipe, dot, scope)
        items: list[tuple[Any, Any]]
        if value is None or value is MISSING:
            items = []
        elif isinstance(value, Mapping):
            items = [(k, value[k]) for k in sorted(value)]
        elif isinstance(value, Sequence) and not isinstance(value, str | bytes):
            items = list(enumerate(value))
        elif isinstance(value, int) and not isinstance(value, bool):
            items = [(i, i) for i in range(value)]
        else:
            raise TemplateError(f"template: range can't iterate over {go_str(value)}")
        if not items:
            self._walk(node.else_body, dot, scope, out)
            return
        for key, item in items:
            if len(decl) == 1:
                scope.frames[-1][decl[0]] = item
            elif len(decl) == 2:
                scope.frames[-1][decl[0]] = key
                scope.frames[-1][decl[1]] = item
            self._walk(node.body, item, scope, out)

    # -- pipelines ---------------------------------------------------------------------------
    def _pipeline(self, pipe: Pipeline, dot: Any, scope: _Scope) -> Any:
        value = self._commands(pipe, dot, scope)
        for name in pipe.decl:
            if pipe.is_assign:
                scope.assign(name, value)
            else:
                scope.frames[-1][name] = value
        return value

    def _commands(self, pipe: Pipeline, dot: Any, scope: _Scope) -> Any:
        value: Any = MISSING
        for i, cmd in enumerate(pipe.commands):
            value = self._command(cmd, dot, scope, value if i else MISSING, piped=i > 0)
        return value

    def _command(self, cmd: list[Operand], dot: Any, scope: _Scope, prev: Any, piped: bool) -> Any:
        head, args = cmd[0], cmd[1:]
        extra = [prev] if piped else []
        if head.kind == "ident":
            fn = self.funcs.get(head.name)
            if fn is None:
                raise TemplateError(f'template: function "{head.name}" not defined')
            values = [self._operand(a, dot, scope) for a in args] + extra
            try:
                return fn(*values)
            except TemplateError:
                raise
            except (TypeError, ValueError, KeyError, IndexError) as exc:
                raise TemplateError(f"template: error calling {head.name}: {exc}") from exc
        if head.kind in ("field", "var") and (args or piped):
            # A method call: the last name in the chain is called with the arguments.
            base = dot if head.kind == "field" else scope.lookup(head.name)
            target = self._chain(base, head.chain[:-1]) if head.chain else base
            if not head.chain:
                raise TemplateError("template: can't give argument to non-function")
            method = _field(target, head.chain[-1], call=False)
            if not callable(method):
                raise TemplateError(f"template: can't give argument to non-function {head.chain[-1]}")
            return method(*([self._operand(a, dot, scope) for a in args] + extra))
        if args or piped:
            raise TemplateError("template: can't give argument to non-function")
        return self._operand(head, dot, scope)

    def _operand(self, op: Operand, dot: Any, scope: _Scope) -> Any:
        if op.kind == "literal":
            return op.value
        if op.kind == "field":
            return self._chain(dot, op.chain)
        if op.kind == "var":
            return self._chain(scope.lookup(op.name), op.chain)
        if op.kind == "pipe":
            assert op.pipe is not None
            scope.frames.append({})
            try:
                value = self._pipeline(op.pipe, dot, scope)
            finally:
                scope.frames.pop()
            return self._chain(value, op.chain)
        fn = self.funcs.get(op.name)
        if fn is None:
            raise TemplateError(f'template: function "{op.name}" not defined')
        return fn()

    def _chain(self, value: Any, chain: tuple[str, ...]) -> Any:
        for name in chain:
            value = _field(value, name, call=True)
        return value


def _field(value: Any, name: str, call: bool) -> Any:
    if value is None or value is MISSING:
        return MISSING
    if isinstance(value, Mapping):
        return value.get(name, MISSING)
    getter = getattr(value, "template_field", None)
    if getter is not None:
        result = getter(name)
    elif name.startswith("_") or not hasattr(value, name):
        raise TemplateError(f"template: can't evaluate field {name} in type {type(value).__name__}")
    else:
        result = getattr(value, name)
    if call and callable(result):
        return result()
    return result


def render(source: str, data: Any) -> str:
    """Parse and execute in one step."""
    return Template(source).execute(data)
