"""Go text/template as docker's --format uses it: a table of template -> output cases."""

from __future__ import annotations

from typing import Any

import pytest

from skiff.cli.gotemplate import Template, TemplateError, render
from skiff.errors import InvalidArgument

DATA: dict[str, Any] = {
    "Id": "abc",
    "State": {"Status": "running", "Pid": 42, "Running": True, "ExitCode": 0},
    "Config": {"Env": ["A=1", "B=2"], "Labels": {"k": "v", "com.x": "y"}, "Cmd": None},
    "NetworkSettings": {"IPAddress": "10.88.0.2", "Ports": {}},
    "Mounts": [{"Source": "/a", "Destination": "/x"}, {"Source": "/b", "Destination": "/y"}],
    "Ratio": 1.5,
    "Name": "/web",
}

CASES = [
    ("{{.Id}}", "abc"),
    ("{{.State.Status}}", "running"),
    ("{{.State.Pid}}", "42"),
    ("{{.State.Running}}", "true"),
    ("{{.NetworkSettings.IPAddress}}", "10.88.0.2"),
    ("{{.Config.Env}}", "[A=1 B=2]"),
    ("{{.Config.Labels}}", "map[com.x:y k:v]"),
    ("{{.Config.Cmd}}", "<nil>"),
    ("{{.Missing}}", "<no value>"),
    ("{{json .Config.Env}}", '["A=1","B=2"]'),
    ("{{json .State}}", '{"Status":"running","Pid":42,"Running":true,"ExitCode":0}'),
    ("{{.State | json}}", '{"Status":"running","Pid":42,"Running":true,"ExitCode":0}'),
    ('{{index .Config.Labels "k"}}', "v"),
    ("{{index .Config.Env 1}}", "B=2"),
    ("{{range .Mounts}}{{.Source}}:{{.Destination}} {{end}}", "/a:/x /b:/y "),
    ("{{range $i, $m := .Mounts}}{{$i}}{{$m.Source}}{{end}}", "0/a1/b"),
    ("{{range .Nothing}}x{{else}}empty{{end}}", "empty"),
    ("{{range $k, $v := .Config.Labels}}{{$k}}={{$v}};{{end}}", "com.x=y;k=v;"),
    ('{{if eq .State.Status "running"}}up{{else}}down{{end}}', "up"),
    ('{{if ne .State.Status "running"}}up{{else}}down{{end}}', "down"),
    ("{{if .Config.Cmd}}cmd{{else if .State.Running}}run{{else}}none{{end}}", "run"),
    ("{{if and .State.Running (eq .State.Pid 42)}}ok{{end}}", "ok"),
    ("{{if or .Config.Cmd .Missing}}yes{{else}}no{{end}}", "no"),
    ("{{if not .Config.Cmd}}nocmd{{end}}", "nocmd"),
    ("{{with .State}}{{.Status}}/{{.Pid}}{{end}}", "running/42"),
    ("{{with .Missing}}x{{else}}nothing{{end}}", "nothing"),
    ('{{join .Config.Env ","}}', "A=1,B=2"),
    ('{{split "a:b:c" ":"}}', "[a b c]"),
    ("{{upper .State.Status}}", "RUNNING"),
    ('{{lower "ABC"}}', "abc"),
    ('{{title "hello world"}}', "Hello World"),
    ("{{truncate .State.Status 3}}", "run"),
    ('{{pad "x" 2 1}}|', "  x |"),
    ('{{printf "%s-%d" .State.Status .State.Pid}}', "running-42"),
    ('{{printf "%-9s|%5d|%q" "ab" 7 "c"}}', 'ab       |    7|"c"'),
    ("{{println .Id}}", "abc\n"),
    ("{{len .Mounts}}", "2"),
    ("{{len .Config.Labels}}", "2"),
    ("{{$v := .State.Pid}}pid={{$v}}", "pid=42"),
    ("{{$v := 1}}{{$v = 2}}{{$v}}", "2"),
    ("{{$.Id}}{{range .Mounts}}{{$.Id}}{{end}}", "abcabcabc"),
    ("a  {{- .Id -}}  b", "aabcb"),
    ("a\n{{- .Id}}\n", "aabc\n"),
    ("{{/* a comment */}}x", "x"),
    ("{{.Ratio}}", "1.5"),
    ("{{(index .Mounts 1).Source}}", "/b"),
    ('{{.Name | printf "%s!"}}', "/web!"),
    ('{{"quoted \\"s\\""}}', 'quoted "s"'),
    ("{{`raw`}}", "raw"),
    ("{{lt 1 2}} {{gt 1 2}} {{le 2 2}} {{ge 1 2}}", "true false true false"),
    ("{{slice .Id 1}}", "bc"),
    ('{{print 1 2}}{{print "a" "b"}}', "1 2ab"),
]


@pytest.mark.parametrize(("template", "expected"), CASES)
def test_template_cases(template: str, expected: str) -> None:
    assert render(template, DATA) == expected


class _Row:
    """A formatter-style object: properties and a method taking an argument."""

    ID = "c1"

    def Label(self, name: str) -> str:  # docker's ps .Label method
        return {"app": "web"}.get(name, "")


def test_method_call_with_argument_on_object() -> None:
    assert render('{{.ID}} {{.Label "app"}}', _Row()) == "c1 web"


def test_unknown_field_on_object_is_an_error() -> None:
    with pytest.raises(TemplateError, match="can't evaluate field Nope"):
        render("{{.Nope}}", _Row())


@pytest.mark.parametrize(
    "source",
    ["{{.Id", "{{if .Id}}x", "{{end}}", "{{nosuchfunc .Id}}", "{{range}}{{end}}", "{{.Id | }}"],
)
def test_bad_templates_raise_invalid_argument(source: str) -> None:
    with pytest.raises(InvalidArgument):
        Template(source).execute(DATA)


def test_template_is_reusable() -> None:
    t = Template("{{.State.Status}}")
    assert [t.execute(DATA), t.execute({"State": {"Status": "exited"}})] == ["running", "exited"]
