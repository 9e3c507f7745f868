"""The docs site's build code (mkdocs.yml: ``hooks`` and mkdocstrings' griffe ``extensions``).

- ``on_page_markdown``: each ``<!-- generated: NAME -->`` marker in a page is replaced with the
  Markdown that ``pipeline.docgen`` makes from the code (the config schema, the presets, the CLI's
  parser), so the config table and the CLI reference are those of the code being documented. An
  unknown marker fails the build.
- ``DocstringTweaks``, a griffe extension for the API page: the trailing ``# comment`` of a class
  attribute (how the dataclasses' fields are documented) becomes its docstring, and Sphinx roles
  (``:class:`~a.b.C```) become plain code (``C``), which Markdown would otherwise show as typed.
"""

from __future__ import annotations

import io
import re
import tokenize
from typing import Any

import griffe

from pipeline.docgen import expand


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any, **kwargs: Any) -> str:
    return expand(markdown)


_ROLE = re.compile(r":(?:class|meth|func|attr|data|exc|mod|obj):`(~?)([\w.]+)`")


def plain_roles(text: str) -> str:
    """``:class:`~a.b.C``` -> ```C```; ``:meth:`a.b``` -> ```a.b```."""
    return _ROLE.sub(lambda m: f"`{m.group(2).rsplit('.', 1)[-1] if m.group(1) else m.group(2)}`", text)


def _trailing_comment(lines: list[str]) -> str | None:
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO("\n".join(lines) + "\n").readline))
    except (tokenize.TokenError, SyntaxError):
        return None
    comments = [t.string.lstrip("#").strip() for t in tokens if t.type == tokenize.COMMENT]
    return comments[-1] if comments and comments[-1] else None


class DocstringTweaks(griffe.Extension):
    def on_attribute_instance(self, *, attr: griffe.Attribute, **kwargs: Any) -> None:
        if attr.docstring is None and attr.parent is not None and attr.parent.is_class:
            comment = _trailing_comment(attr.lines)
            if comment:
                attr.docstring = griffe.Docstring(comment, parent=attr)

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        self._roles(pkg, set())

    def _roles(self, obj: griffe.Object | griffe.Alias, seen: set[str]) -> None:
        if obj.is_alias or obj.path in seen:
            return
        seen.add(obj.path)
        if obj.docstring is not None:
            obj.docstring.value = plain_roles(obj.docstring.value)
        for member in obj.members.values():
            self._roles(member, seen)
