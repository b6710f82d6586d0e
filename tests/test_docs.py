"""The documentation holds together: every relative link of the README and of docs/*.md
leads to a file that exists, and every `#anchor` to a heading of that file (as GitHub
makes anchors); the README stays an entry page, with the commands people paste; every
endpoint of the admin listener is named with its method; the examples of
docs/shadow.md are what splitter takes and says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from splitter.admin.routes import ROUTES
from splitter.config import Shadow, parse
from tests.support import run_cli

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"`+[^`]*`+")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def _prose(text: str) -> list[str]:
    """The lines outside fenced code blocks (a `# comment` in a shell block is no
    heading, and a `[x](y)` in code is no link)."""
    lines, in_fence = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if not in_fence:
            lines.append(line)
    return lines


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: its text (markup dropped), lower-case, with
    everything but letters, digits, spaces, hyphens and underscores removed, and spaces
    turned into hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = text.replace("`", "").replace("*", "")
    text = re.sub(r"<[^>]+>", "", text)
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every anchor of a page, a repeated heading getting -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    out = set()
    for line in _prose(page.read_text()):
        match = HEADING.match(line)
        if match is None:
            continue
        anchor = github_anchor(match.group(2))
        count = seen.get(anchor, 0)
        seen[anchor] = count + 1
        out.add(anchor if count == 0 else f"{anchor}-{count}")
    return out


def links(page: Path) -> list[str]:
    found = []
    for line in _prose(page.read_text()):
        found += LINK.findall(INLINE_CODE.sub("", line))
    return found


def test_github_anchors_are_made_as_github_makes_them() -> None:
    assert github_anchor("The config file") == "the-config-file"
    assert github_anchor("`splitter ctl`") == "splitter-ctl"
    assert github_anchor("Limits and timeouts") == "limits-and-timeouts"
    assert github_anchor("Live statistics, and the stream!") == "live-statistics-and-the-stream"
    assert github_anchor("HTTP/1.1 as bytes") == "http11-as-bytes"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_leads_to_a_file_and_heading_that_exist(page: Path) -> None:
    broken = []
    for target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # https:, mailto:, ...
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: no heading #{anchor} in {file.relative_to(REPO)}")
    assert broken == [], broken


def test_every_docs_page_is_linked_from_the_readme() -> None:
    targets = {t.partition("#")[0] for t in links(REPO / "README.md")}
    pages = {f"docs/{p.name}" for p in (REPO / "docs").glob("*.md")}
    assert pages - targets == set(), "docs pages the README does not link to"


def test_the_readme_is_an_entry_page_with_the_commands_people_paste() -> None:
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) < 300
    for line in (
        "python3 -m venv .venv && . .venv/bin/activate && pip install . && splitter demo",
        "pip install -c constraints.txt -e '.[test]' && scripts/test",  # .ci/run runs it
    ):
        assert line in readme.splitlines(), line


# -- every endpoint of the admin listener is in the docs ---------------------------------

ENDPOINT_PAGES = [REPO / "docs" / name for name in ("admin-api.md", "rollouts.md", "shadow.md")]
BRACES = re.compile(r"\{([\w-]+(?:,[\w-]+)+)\}")  # /api/v1/rollout/{pause,resume}: two paths


def _expanded(line: str) -> list[str]:
    """A line with its first brace group of alternatives expanded, recursively."""
    match = BRACES.search(line)
    if match is None:
        return [line]
    head, tail = line[: match.start()], line[match.end() :]
    return [out for word in match[1].split(",") for out in _expanded(head + word + tail)]


def _endpoint(method: str, path: str) -> re.Pattern[str]:
    """The method, then the path on the same line (`{route}` any route's name, as the
    docs write `/api/v1/routes/shop/...`), the path whole (not a prefix of a longer one)."""
    parts = [r"[\w-]+" if p == "{route}" else re.escape(p) for p in path.split("/")]
    return re.compile(rf"\b{method}\b.*{'/'.join(parts)}(?![\w/{{-])")


def test_every_endpoint_of_the_admin_listener_is_documented() -> None:
    lines = [
        expanded
        for page in ENDPOINT_PAGES
        for line in _prose(page.read_text())
        for expanded in _expanded(line)
    ]
    missing = [
        f"{route.method} {route.path}"
        for route in ROUTES
        if route.documented
        and not any(_endpoint(route.method, route.path).search(line) for line in lines)
    ]
    assert missing == [], "endpoints no docs page names with their method"


# -- docs/shadow.md: its examples are what splitter takes and says ------------------------

SHADOW_PAGE = REPO / "docs" / "shadow.md"


def _blocks(page: Path, kind: str) -> list[str]:
    """The fenced code blocks of one kind (```yaml, ```console) of a page, in order."""
    return re.findall(rf"^```{kind}\n(.*?)^```", page.read_text(), re.M | re.S)


def test_the_shadow_examples_are_valid_and_the_defaults_shown_are_splitters() -> None:
    first, section = _blocks(SHADOW_PAGE, "yaml")[:2]
    example = yaml.safe_load(first)
    shadow = parse(example, env={}).routes[0].shadow
    assert shadow is not None
    assert (shadow.pool, shadow.share, shadow.reference) == ("canary", 0.05, "green")
    assert shadow.ignore_json == ("/generated_at", "/items/*/updated_at")
    # The section written out with every default is the section with only the keys
    # that have none.
    written = parse({**example, **yaml.safe_load(section)}, env={}).routes[0].shadow
    assert written == Shadow(pool="canary", share=0.05, reference="green")


def test_the_shadow_check_example_is_what_splitter_check_says(tmp_path: Path) -> None:
    bad = _blocks(SHADOW_PAGE, "yaml")[2]
    console = next(block for block in _blocks(SHADOW_PAGE, "console") if "shadow." in block)
    command, *said = console.splitlines()
    assert command == "$ splitter check -c splitter.yaml"
    (tmp_path / "splitter.yaml").write_text(bad)
    result = run_cli("check", "-c", "splitter.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert (result.stdout + result.stderr).splitlines() == said
