"""One policy file read as YAML with positions: plain data plus where each value was written.

Errors must let an admin fix the file without reading code, so every error names the
file, line and column. To get positions we compose the YAML node tree ourselves
(yaml.compose semantics with the SafeLoader: only standard tags, never Python objects),
build plain data from it and remember where each value and each key came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from guard.policy.issues import PolicyIssue
from guard.policy.schema import Loc

# A policy is small; many more nodes than this means alias expansion ("billion laughs").
_MAX_NODES = 50_000
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"


@dataclass(frozen=True)
class Mark:
    """Where a value (or key) was written."""

    file: str  # as shown to people: the path as given, joined with include paths
    source: Path  # resolved file, to resolve relative paths written in it
    line: int  # 1-based
    column: int  # 1-based
    path: Loc  # location inside that file (indices local to the file)

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


class _ConvertError(Exception):
    def __init__(self, node: yaml.Node, message: str) -> None:
        super().__init__(message)
        self.node = node
        self.message = message


@dataclass
class Tree:
    """Plain data plus the position of every value and key in it."""

    data: dict[str, Any]
    values: dict[Loc, Mark]
    keys: dict[Loc, Mark]


@dataclass
class ParsedFile:
    """What reading one file gave: its bytes (None if unreadable) and its tree or issues."""

    raw: bytes | None = None
    tree: Tree | None = None
    issues: list[PolicyIssue] = field(default_factory=list)


def parse_file(source: Path, display: str) -> ParsedFile:
    """One YAML file as a Tree, or the problems that keep it from being one."""
    out = ParsedFile()
    try:
        raw = source.read_bytes()
    except OSError as exc:
        out.issues.append(PolicyIssue(display, None, None, "", f"cannot read: {exc.strerror}"))
        return out
    out.raw = raw
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        column = exc.start - (before.rfind(b"\n") + 1) + 1
        out.issues.append(
            PolicyIssue(
                display, line, column, "", "expected UTF-8 text (save the file as UTF-8)"
            )
        )
        return out
    loader = yaml.SafeLoader(text)
    tree = Tree({}, {}, {})
    try:
        node = loader.get_single_node()
        if node is None:  # an empty file is an empty policy fragment
            out.tree = tree
            return out
        if not isinstance(node, yaml.MappingNode):
            raise _ConvertError(
                node, "expected a mapping of sections (defaults:, groups:, rules: ...)"
            )
        converter = _Converter(loader, tree, display, source)
        tree.data = converter.convert(node, ())
        out.tree = tree
        return out
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.problem:
            problem = f"{problem} ({exc.context})"
        out.issues.append(
            PolicyIssue(
                display,
                mark.line + 1 if mark else None,
                mark.column + 1 if mark else None,
                "",
                f"YAML syntax error: {problem}",
            )
        )
    except yaml.YAMLError as exc:  # reader errors (control characters) and the like
        out.issues.append(PolicyIssue(display, None, None, "", f"YAML error: {exc}"))
    except _ConvertError as exc:
        at = node_mark(exc.node, display, source, ())
        out.issues.append(PolicyIssue(display, at.line, at.column, "", exc.message))
    finally:
        loader.dispose()
    return out


def node_mark(node: yaml.Node, display: str, source: Path, path: Loc) -> Mark:
    """Where a YAML node starts, 1-based."""
    return Mark(display, source, node.start_mark.line + 1, node.start_mark.column + 1, path)


class _Converter:
    """Node tree → plain data, recording positions; safe tags only."""

    def __init__(self, loader: yaml.SafeLoader, tree: Tree, display: str, source: Path) -> None:
        self.loader = loader
        self.tree = tree
        self.display = display
        self.source = source
        self.budget = _MAX_NODES
        self.active: set[int] = set()  # nodes being converted, to catch recursive aliases

    def mark(self, node: yaml.Node, path: Loc) -> Mark:
        return node_mark(node, self.display, self.source, path)

    def convert(self, node: yaml.Node, path: Loc) -> Any:
        self.budget -= 1
        if self.budget < 0:
            raise _ConvertError(node, "document too large (too many nodes or alias expansions)")
        if id(node) in self.active:
            raise _ConvertError(node, "recursive YAML alias")
        self.tree.values.setdefault(path, self.mark(node, path))
        if isinstance(node, yaml.ScalarNode):
            # SafeConstructor: unknown tags (!!python/object ...) raise ConstructorError
            return self.loader.construct_object(node, deep=True)
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                if node.tag != _SEQ_TAG:
                    raise _ConvertError(node, f"unsupported YAML tag {node.tag}")
                return [self.convert(item, (*path, i)) for i, item in enumerate(node.value)]
            if isinstance(node, yaml.MappingNode):
                return self.convert_mapping(node, path)
            raise _ConvertError(node, "unsupported YAML node")
        finally:
            self.active.discard(id(node))

    def convert_mapping(self, node: yaml.MappingNode, path: Loc) -> dict[str, Any]:
        if node.tag != _MAP_TAG:
            raise _ConvertError(node, f"unsupported YAML tag {node.tag}")
        self.loader.flatten_mapping(node)  # YAML merge keys (<<: *anchor)
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise _ConvertError(key_node, "expected a plain text key")
            key = self.loader.construct_object(key_node)
            if not isinstance(key, str):
                raise _ConvertError(key_node, f"expected a text key; got {key!r} (quote it)")
            child = (*path, key)
            if key in out:
                first = self.tree.keys[child]
                raise _ConvertError(key_node, f"duplicate key {key!r} (first at line {first.line})")
            self.tree.keys[child] = self.mark(key_node, child)
            out[key] = self.convert(value_node, child)
        return out
