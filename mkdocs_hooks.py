"""mkdocs hooks: README.md as the site's front page, and Sphinx roles in docstrings.

README.md links the pages as docs/<page>.md (so the links work on GitHub); the site's
index.md is README.md with that prefix dropped. The API docstrings use Sphinx roles
(:class:`X`); the rendered pages show them as plain code.
"""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.structure.files import File, Files

README = Path(__file__).parent / "README.md"
ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|exc|obj):(<code>)")
LITERAL_INTRO = re.compile(r"::(</p>\s*<div class=\"language-|</p>\s*<pre)")


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
