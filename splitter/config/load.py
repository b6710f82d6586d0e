"""Reading the config file: bounded YAML loading, lines for every path, then `parse`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import yaml

from splitter.config.convert import (
    join_path,
)
from splitter.config.model import Config
from splitter.config.parse import in_file_order, parse
from splitter.errors import ConfigError, ConfigProblem

# ---------------------------------------------------------------------------------------
# Reading the file

# The C loader is several times faster; the pure-Python one behaves the same.
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MERGE_TAG = "tag:yaml.org,2002:merge"
_INT_TAG = "tag:yaml.org,2002:int"
_STR_TAG = "tag:yaml.org,2002:str"

# Bounds on the work of reading a file, checked before any Python object is built: its
# size, and its number of nodes once every alias is expanded (a "billion laughs" of nine
# levels is a few hundred bytes and a billion nodes). No config comes near either.
MAX_CONFIG_BYTES = 1 << 20
MAX_NODES = 100_000
# A longer integer costs (a YAML 1.1 base-60 int is quadratic to build) or fails (int()
# refuses over 4300 digits); no setting needs one.
_MAX_INT_CHARS = 100


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [child for pair in node.value for child in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _entries(node: yaml.Node, path: str) -> list[tuple[str, yaml.Node, int]]:
    """(YAML path, child node, line) of a node's keys, values and items, in file order."""
    out: list[tuple[str, yaml.Node, int]] = []
    if isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out.append((f"{path}[{i}]", item, item.start_mark.line + 1))
    elif isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            line = key.start_mark.line + 1
            named = isinstance(key, yaml.ScalarNode) and key.tag != _MERGE_TAG
            out.append((path, key, line))
            out.append((join_path(path, key.value) if named else path, value, line))
    return out


def _bound_expansion(root: yaml.Node, long_ints: set[int]) -> ConfigProblem | None:
    """A problem when the document, with every alias expanded, has more than MAX_NODES
    nodes, or an alias inside the node it names; else None. Each distinct node is sized
    once (aliases repeat a node, they do not copy it), so this is linear in the file.
    Integers longer than _MAX_INT_CHARS become strings, their nodes added to `long_ints`
    for `_index_lines` to report."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()  # the nodes on the path being walked
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, closing = stack.pop()
        key = id(node)
        if closing:
            open_nodes.discard(key)
            total = 1 + sum(sizes[id(child)] for child in _children(node))
            sizes[key] = min(total, MAX_NODES + 1)
        elif key in open_nodes:
            message = "invalid YAML: an alias inside the node it refers to (recursive)"
            return ConfigProblem("", message, node.start_mark.line + 1)
        elif key not in sizes:
            if node.tag == _INT_TAG and len(node.value) > _MAX_INT_CHARS:
                node.tag = _STR_TAG
                long_ints.add(key)
            open_nodes.add(key)
            stack.append((node, True))
            stack.extend((child, False) for child in _children(node))
    if sizes[id(root)] <= MAX_NODES:
        return None
    # Point at the first entry, in file order, that alone goes beyond the bound.
    path, node, line = "", root, root.start_mark.line + 1
    while True:
        over = [entry for entry in _entries(node, path) if sizes[id(entry[1])] > MAX_NODES]
        if not over:
            break
        path, node, line = over[0]
    message = f"expands to more than {MAX_NODES} YAML nodes with its aliases (an alias bomb?)"
    return ConfigProblem(path, message, line)


def _index_lines(
    node: yaml.Node,
    path: str,
    lines: dict[str, int],
    problems: list[ConfigProblem],
    long_ints: set[int],
) -> None:
    """Record the line of every key and list item; report duplicate keys (PyYAML keeps the
    last one silently, and a typo must not be silently ignored) and `long_ints`."""
    if id(node) in long_ints:
        message = f"must not be an integer of more than {_MAX_INT_CHARS} characters"
        problems.append(ConfigProblem(path, message, node.start_mark.line + 1))
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
                continue  # merged keys (<<: *base) keep the line of the mapping holding them
            child, line = join_path(path, key_node.value), key_node.start_mark.line + 1
            if child in seen:
                problems.append(ConfigProblem(child, "duplicate key", line))
            seen.add(child)
            lines[child] = line
            _index_lines(value_node, child, lines, problems, long_ints)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            child = f"{path}[{i}]"
            lines[child] = item.start_mark.line + 1
            _index_lines(item, child, lines, problems, long_ints)


def load(
    path: str,
    env: Mapping[str, str] | None = None,
    files: Callable[[Config], list[ConfigProblem]] | None = None,
) -> Config:
    """Read and parse a config file. OSError and YAML syntax errors become ConfigError.

    `files` checks the files the config names (certificates: splitter.tls.check_files),
    once the config is valid; its problems get their lines here."""

    def fail(message: str, line: int | None = None) -> ConfigError:
        return ConfigError([ConfigProblem("", message, line)], source=path)

    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise fail(f"cannot read config file: {e.strerror or e}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise fail(f"config file is larger than {MAX_CONFIG_BYTES >> 20} MiB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise fail("cannot read config file: not UTF-8 text") from None

    lines: dict[str, int] = {}
    problems: list[ConfigProblem] = []
    long_ints: set[int] = set()
    loader = _Loader(text)
    try:
        node = loader.get_single_node()  # aliases are references here: no expansion yet
        if node is None:
            raise fail("empty config file")
        too_big = _bound_expansion(node, long_ints)
        if too_big is not None:
            raise ConfigError([too_big], source=path)
        _index_lines(node, "", lines, problems, long_ints)  # before merge keys are rewritten
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as e:
        line = e.problem_mark.line + 1 if e.problem_mark is not None else None
        raise fail(f"invalid YAML: {e.problem or e.context or 'syntax error'}", line) from None
    except yaml.YAMLError as e:
        raise fail(f"invalid YAML: {e}") from None
    except RecursionError:  # a self-referencing anchor
        raise fail("invalid YAML: nested too deeply or recursive") from None
    finally:
        loader.dispose()

    try:
        config = parse(data, lines, env)
    except ConfigError as e:
        reported = {p.path for p in problems}  # a long integer is not also "not a number"
        problems += [p for p in e.problems if p.path not in reported]
    if problems:
        raise ConfigError(in_file_order(problems), source=path)
    if files is not None:
        found = [ConfigProblem(p.path, p.message, lines.get(p.path)) for p in files(config)]
        if found:
            raise ConfigError(in_file_order(found), source=path)
    return config
