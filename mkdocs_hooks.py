"""The docs build's Python: README.md as the site's front page, Sphinx markup in docstrings.

README.md links the pages as docs/<page>.md (so the links work on GitHub); the site's
index.md is README.md with that prefix dropped. The API docstrings are written for Sphinx:
roles (:class:`X`) are shown as plain code, a paragraph ending in "::" before a code
block ends in ":", and ``#:`` comments document attributes (CommentDocstrings, a griffe
extension that mkdocs.yml gives mkdocstrings).
"""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.structure.files import File, Files

README = Path(__file__).parent / "README.md"
ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|exc|obj):(<code>)")
LITERAL_INTRO = re.compile(r"::(</p>\s*<(?:div|pre)\b)")


def on_files(files: Files, config) -> Files:
    text = README.read_text(encoding="utf-8")
    text = re.sub(r"\]\(docs/", "](", text)
    index = files.get_file_from_path("index.md")
    if index is not None:
        files.remove(index)
    files.append(File.generated(config, "index.md", content=text))
    return files


def on_page_content(html: str, page, config, files) -> str:
    html = ROLE.sub(r"\1", html)
    return LITERAL_INTRO.sub(r":\1", html)


try:  # the griffe extension below is loaded by mkdocstrings (mkdocs.yml), not by mkdocs
    import griffe
except ImportError:  # pragma: no cover
    griffe = None

if griffe is not None:

    class CommentDocstrings(griffe.Extension):
        """Sphinx's ``#:`` comments, above an attribute or after it, become its docstring."""

        def on_attribute_instance(self, *, node, attr, agent, **kwargs) -> None:
            if attr.docstring is not None or attr.lineno is None or attr.filepath is None:
                return
            lines = Path(attr.filepath).read_text(encoding="utf-8").splitlines()
            doc: list[str] = []
            i = attr.lineno - 2  # the line above the assignment (lineno is 1-based)
            while i >= 0 and lines[i].strip().startswith("#:"):
                doc.insert(0, lines[i].strip()[2:].strip())
                i -= 1
            if not doc and "#:" in lines[attr.lineno - 1]:
                doc = [lines[attr.lineno - 1].split("#:", 1)[1].strip()]
            if doc:
                attr.docstring = griffe.Docstring("\n".join(doc), lineno=attr.lineno, parent=attr)
