"""Go ``text/template``, as the docker CLI uses it for ``--format``.

Why our own: on PyPI the only candidate (``go_template`` 0.0.3, 2019) wraps a
prebuilt Go shared library, renders files only and cannot register functions;
nothing maintained implements the language in Python. Docker's formats use a small
part of it (fields, pipelines, if/range/with, variables, a dozen functions), which
this package implements: ``lexer`` -> ``parser`` (a node tree) -> ``evaluator``.
"""

from skiff.cli.gotemplate.evaluator import Template, TemplateError, render
from skiff.cli.gotemplate.functions import go_str

__all__ = ["Template", "TemplateError", "go_str", "render"]
