"""The documentation: README.md and docs/ stay linked, complete and short.

- every relative link `[text](path)` or `[text](path#anchor)` in README.md and
  docs/**/*.md reaches an existing file, and an `#anchor` into a .md file
  reaches one of its headings (GitHub's slugs); http(s) and mailto links are
  not checked (no network in the tests);
- every command of `nbnets` has its manual, docs/commands/<name>.md;
- the README is a front door: at most README_MAX_LINES lines.
"""

from __future__ import annotations

import re
import urllib.parse
from pathlib import Path

import pytest

from runner.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_MAX_LINES = 260

_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
# [text](target) and ![alt](target); the text may hold one level of brackets
# and inline code, the target may be <...> or end with a "title".
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*(<[^>]*>|[^)\s]*)(?:\s+\"[^\"]*\")?\s*\)")
_REF_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*(\S+)")
_HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"", re.IGNORECASE)


def _prose_lines(text: str):
    """(line number, line) of the lines outside fenced code blocks."""
    fence = None
    for number, line in enumerate(text.splitlines(), 1):
        m = _FENCE.match(line)
        if m:
            if fence is None:
                fence = m.group(1)
            elif m.group(1) == fence:
                fence = None
            continue
        if fence is None:
            yield number, line


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: the rendered text lowercased, every
    character that is not a letter, digit, underscore, hyphen or space removed
    (backticks, colons, brackets, dots, slashes, ...), each space a hyphen."""
    parts = []
    for i, part in enumerate(re.split(r"(`+.+?`+)", heading)):
        if i % 2:                                  # inline code renders literally
            parts.append(part.strip("`"))
        else:                                      # a link renders as its text; HTML tags vanish
            part = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", part)
            parts.append(re.sub(r"</?[A-Za-z][^>]*>", "", part))
    text = "".join(parts).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor of a markdown file: its headings' slugs (a repeated slug
    gets -1, -2, ... as on GitHub) and explicit <a name=...>/<a id=...>."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    for _, line in _prose_lines(path.read_text(encoding="utf-8")):
        found.update(_HTML_ANCHOR.findall(line))
        m = _HEADING.match(line)
        if not m:
            continue
        slug = github_slug(m.group(2))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        found.add(slug if n == 0 else f"{slug}-{n}")
    return found


def links(path: Path):
    """(line number, target) of every link in a markdown file, outside code."""
    for number, line in _prose_lines(path.read_text(encoding="utf-8")):
        prose = _CODE_SPAN.sub("", line)
        for m in _LINK.finditer(prose):
            yield number, m.group(1).strip("<>")
        m = _REF_DEF.match(prose)
        if m:
            yield number, m.group(1).strip("<>")


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def broken_links(path: Path) -> list[str]:
    """One line per relative link of `path` that does not resolve."""
    problems = []
    for number, target in links(path):
        if not target or re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
            continue                      # http:, https:, mailto:, ... : not checked here
        file_part, _, anchor = target.partition("#")
        file_part = urllib.parse.unquote(file_part)
        dest = (path.parent / file_part).resolve() if file_part else path
        where = f"{_shown(path)}:{number}: {target}"
        if not dest.exists():
            problems.append(f"{where}: no file {dest}")
            continue
        if anchor and dest.is_file() and dest.suffix.lower() == ".md":
            if urllib.parse.unquote(anchor).lower() not in anchors(dest):
                problems.append(f"{where}: no heading with anchor #{anchor} in {dest.name}")
    return problems


def _doc_files() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


# ----------------------------------------------------------------- the checker


def test_github_slug_rule():
    assert github_slug("The `--arch` grammar") == "the---arch-grammar"
    assert github_slug("Checking a GPU: `scripts/gpu_check.py`") == "checking-a-gpu-scriptsgpu_checkpy"
    assert github_slug("Files (in `results/grad-decay/<timestamp>-<id>/`)") == \
        "files-in-resultsgrad-decaytimestamp-id"
    assert github_slug("Layers, models, optimizers, checkpoints") == "layers-models-optimizers-checkpoints"
    assert github_slug("See [the API](api.md) here") == "see-the-api-here"
    assert github_slug('<a name="x"></a>Odd_name 2') == "odd_name-2"


def test_checker_reports_planted_broken_links(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "other.md").write_text(
        "# Other page\n\n## Good: heading\n\n```\n# not a heading\n```\n\n## Twice\n\n## Twice\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n"
        "[ok](sub/other.md) [ok](sub/other.md#good-heading) [ok](sub/other.md#twice-1) [ok](#page)\n"
        "[web](https://example.org/nothing.md) [mail](mailto:someone@example.org)\n"
        "`[in code](missing-in-code.md)`\n"
        "```\n[in a fence](missing-in-fence.md)\n```\n"
        "[gone](missing.md)\n"
        "[bad anchor](sub/other.md#not-a-heading)\n"
        "[fenced heading](sub/other.md#not-a-heading-either)\n"
        "[self](#nowhere)\n")
    problems = broken_links(page)
    assert len(problems) == 4, problems
    assert "missing.md" in problems[0] and "no file" in problems[0]
    assert "#not-a-heading" in problems[1]
    assert "#not-a-heading-either" in problems[2]
    assert "#nowhere" in problems[3]
    assert all("page.md:" in p for p in problems)


# ----------------------------------------------------------------- the docs


@pytest.mark.parametrize("path", _doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path):
    problems = broken_links(path)
    assert not problems, "broken links:\n" + "\n".join(problems)


@pytest.mark.parametrize("name", sorted(main.commands))
def test_every_command_has_a_manual(name):
    page = DOCS / "commands" / f"{name}.md"
    assert page.is_file(), f"`nbnets {name}` has no manual: write {page.relative_to(ROOT)}"
    assert f"nbnets {name}" in page.read_text(encoding="utf-8")


def test_readme_is_short():
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= README_MAX_LINES, (
        f"README.md has {n} lines (at most {README_MAX_LINES}): move manual text to docs/")


def test_readme_keeps_the_two_set_up_commands():
    text = README.read_text(encoding="utf-8")
    assert "pip install -e '.[plot,mkl]' && nbnets train-charlm" in text
    assert "pip install -e '.[test]' && pytest" in text
