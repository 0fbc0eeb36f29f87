"""Chunks -> a tree of nodes: text, actions (pipelines), if/range/with blocks."""

from __future__ import annotations

from dataclasses import dataclass, field

from skiff.cli.gotemplate.lexer import Chunk, TemplateSyntaxError, Token, lex


@dataclass
class Operand:
    """One argument of a command.

    kind: field (``.A.B``; chain holds names), var (``$x.A``), ident (a function),
    literal (value), pipe (a parenthesised pipeline, then ``chain``).
    """

    kind: str
    name: str = ""
    chain: tuple[str, ...] = ()
    value: object = None
    pipe: Pipeline | None = None


@dataclass
class Pipeline:
    """``$a, $b := cmd1 | cmd2 arg``: declared/assigned variables and commands."""

    decl: tuple[str, ...] = ()
    is_assign: bool = False
    commands: list[list[Operand]] = field(default_factory=list)


@dataclass
class Node:
    """A tree node: kind is text|action|if|range|with."""

    kind: str
    text: str = ""
    pipe: Pipeline | None = None
    body: list[Node] = field(default_factory=list)
    else_body: list[Node] = field(default_factory=list)


_BLOCKS = ("if", "range", "with")


def parse(source: str) -> list[Node]:
    """Parse a whole template."""
    chunks = lex(source)
    nodes, _pos, stop = _parse_list(chunks, 0)
    if stop is not None:
        raise TemplateSyntaxError(f"template: unexpected {{{{{stop}}}}}")
    return nodes


def _parse_list(chunks: list[Chunk], pos: int) -> tuple[list[Node], int, str | None]:
    """Nodes up to an ``end``/``else`` (returned as ``stop``, with ``pos`` at that chunk)."""
    nodes: list[Node] = []
    while pos < len(chunks):
        chunk = chunks[pos]
        if not chunk.is_action:
            nodes.append(Node("text", text=chunk.text))
            pos += 1
            continue
        toks = chunk.tokens
        head = toks[0].value if toks and toks[0].kind == "ident" else ""
        if head in ("end", "else"):
            return nodes, pos, head
        if head in _BLOCKS:
            node, pos = _parse_block(chunks, pos, head, toks[1:])
            nodes.append(node)
            continue
        if head in ("define", "template", "block", "break", "continue"):
            raise TemplateSyntaxError(f"template: {{{{{head}}}}} is not supported by skiff")
        if not toks:
            raise TemplateSyntaxError("template: missing value for command")
        nodes.append(Node("action", pipe=_parse_pipeline(list(toks))))
        pos += 1
    return nodes, pos, None


def _parse_block(chunks: list[Chunk], pos: int, kind: str, toks: tuple[Token, ...]) -> tuple[Node, int]:
    if not toks:
        raise TemplateSyntaxError(f"template: missing value for {kind}")
    node = Node(kind, pipe=_parse_pipeline(list(toks)))
    node.body, pos, stop = _parse_list(chunks, pos + 1)
    if stop is None:
        raise TemplateSyntaxError(f"template: unexpected EOF, missing {{{{end}}}} for {{{{{kind}}}}}")
    if stop == "else":
        else_toks = chunks[pos].tokens[1:]
        if else_toks and else_toks[0].kind == "ident" and else_toks[0].value in ("if", "with"):
            # {{else if x}} is {{else}}{{if x}}...{{end}} sharing this block's {{end}}.
            nested, pos = _parse_block(chunks, pos, else_toks[0].value, else_toks[1:])
            node.else_body = [nested]
            return node, pos
        node.else_body, pos, stop = _parse_list(chunks, pos + 1)
        if stop != "end":
            raise TemplateSyntaxError(f"template: expected {{{{end}}}} for {{{{{kind}}}}}")
    return node, pos + 1


def _parse_pipeline(toks: list[Token]) -> Pipeline:
    pipe = Pipeline()
    # Declarations: $x := ... or $i, $v := ...
    for i, tok in enumerate(toks):
        if tok.kind == "punct" and tok.value in (":=", "="):
            names = [t.value for t in toks[:i] if not (t.kind == "punct" and t.value == ",")]
            if not names or not all(n.startswith("$") for n in names):
                raise TemplateSyntaxError("template: bad variable declaration")
            pipe.decl = tuple(names)
            pipe.is_assign = tok.value == "="
            toks = toks[i + 1 :]
            break
        if tok.kind not in ("var",) and not (tok.kind == "punct" and tok.value == ","):
            break
    cmd: list[Operand] = []
    pos = 0
    while pos < len(toks):
        tok = toks[pos]
        if tok.kind == "punct" and tok.value == "|":
            if not cmd:
                raise TemplateSyntaxError("template: missing command before '|'")
            pipe.commands.append(cmd)
            cmd = []
            pos += 1
            continue
        operand, pos = _parse_operand(toks, pos)
        cmd.append(operand)
    if not cmd:
        raise TemplateSyntaxError("template: missing command in pipeline")
    pipe.commands.append(cmd)
    return pipe


def _parse_operand(toks: list[Token], pos: int) -> tuple[Operand, int]:
    tok = toks[pos]
    if tok.kind == "field":
        chain = tuple(p for p in tok.value.split(".") if p)
        return Operand("field", chain=chain), pos + 1
    if tok.kind == "var":
        name, *rest = tok.value.split(".")
        return Operand("var", name=name, chain=tuple(rest)), pos + 1
    if tok.kind == "ident":
        return Operand("ident", name=tok.value), pos + 1
    if tok.kind == "string":
        return Operand("literal", value=tok.value), pos + 1
    if tok.kind == "bool":
        return Operand("literal", value=tok.value == "true"), pos + 1
    if tok.kind == "nil":
        return Operand("literal", value=None), pos + 1
    if tok.kind == "number":
        return Operand("literal", value=_number(tok.value)), pos + 1
    if tok.kind == "char":
        return Operand("literal", value=ord(tok.value[1:-1].encode().decode("unicode_escape"))), pos + 1
    if tok.kind == "punct" and tok.value == "(":
        depth, end = 0, pos
        for end in range(pos, len(toks)):
            if toks[end].kind == "punct" and toks[end].value == "(":
                depth += 1
            elif toks[end].kind == "punct" and toks[end].value == ")":
                depth -= 1
                if depth == 0:
                    break
        if depth != 0:
            raise TemplateSyntaxError("template: unclosed left paren")
        inner = _parse_pipeline(toks[pos + 1 : end])
        tail: tuple[str, ...] = ()
        nxt = end + 1
        # (pipeline).Field: the lexer glues ".Field" after ")" as a field token.
        if nxt < len(toks) and toks[nxt].kind == "field" and toks[nxt].value != ".":
            tail = tuple(p for p in toks[nxt].value.split(".") if p)
            nxt += 1
        return Operand("pipe", pipe=inner, chain=tail), nxt
    raise TemplateSyntaxError(f"template: unexpected {tok.value!r} in operand")


def _number(text: str) -> int | float:
    try:
        return int(text, 0)
    except ValueError:
        return float(text)
