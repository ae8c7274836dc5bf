"""Load a policy: YAML files (with includes) → validated PolicyDoc → compiled Policy.

Errors must let an admin fix the file without reading code, so every error names the
file, line and column and what was expected:

    policies/policy.yaml:42:7: rules[3].action: expected one of pass, tag, bcc, delay,
    confirm, approve, reject; got 'hold'

To get positions we compose the YAML node tree ourselves (yaml.compose semantics with
the SafeLoader: only standard tags, never Python objects), build plain data from it and
remember where each value and each key came from. Pydantic error locations (loc tuples)
are then mapped back to those positions.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from guard.policy.checks import semantic_issues
from guard.policy.compiled import Policy, compile_policy
from guard.policy.schema import Loc, PolicyDoc

POLICY_FILE = "policy.yaml"
# Top-level sections whose lists are concatenated across includes (in include order).
_CONCAT_SECTIONS = frozenset({"rules", "keywords"})
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


@dataclass(frozen=True)
class PolicyIssue:
    """One problem in a policy, ready to print."""

    file: str
    line: int | None
    column: int | None
    where: str  # "rules[3].action", or "" for the file as a whole
    message: str
    warning: bool = False

    def __str__(self) -> str:
        pos = self.file
        if self.line is not None:
            pos += f":{self.line}:{self.column}"
        prefix = "warning: " if self.warning else ""
        return (
            f"{pos}: {prefix}{self.where}: {self.message}"
            if self.where
            else (f"{pos}: {prefix}{self.message}")
        )


class PolicyError(Exception):
    """The policy is invalid. `issues` lists every problem found, in file order."""

    def __init__(self, issues: Iterable[PolicyIssue], files: Iterable[Path] = ()) -> None:
        self.issues = tuple(issues)
        # files read before the error, and files named but missing: a watcher polls
        # these too, so that creating a missing include triggers a new attempt
        self.files = tuple(files)
        super().__init__("\n".join(str(i) for i in self.issues) or "invalid policy")


def load_policy(path: str | os.PathLike[str]) -> Policy:
    """Load, validate and compile a policy file, or a folder holding policy.yaml."""
    given = Path(path)
    if given.is_dir():
        given = given / POLICY_FILE
    display = os.path.normpath(given)
    if not given.is_file():
        raise PolicyError([PolicyIssue(display, None, None, "", "policy file not found")])
    return _Loader().load(given.resolve(), display)


# ---------------------------------------------------------------------------


class _ConvertError(Exception):
    def __init__(self, node: yaml.Node, message: str) -> None:
        super().__init__(message)
        self.node = node
        self.message = message


@dataclass
class _Tree:
    """Plain data plus the position of every value and key in it."""

    data: dict[str, Any]
    values: dict[Loc, Mark]
    keys: dict[Loc, Mark]


class _Loader:
    def __init__(self) -> None:
        self.issues: list[PolicyIssue] = []
        self.files: list[Path] = []  # YAML files read, in order
        # files named but missing: a watcher polls them so that creating one retries
        self.missing: list[Path] = []
        self.raw: list[tuple[str, bytes]] = []
        self.stack: list[Path] = []  # include chain, for cycle detection

    # -- entry point

    def load(self, source: Path, display: str) -> Policy:
        tree = self._read_tree(source, display)
        if tree is None or self._errors():
            raise PolicyError(self._sorted(), [*self.files, *self.missing])
        # errors about the document as a whole point at the main file
        tree.values[()] = Mark(display, source, 1, 1, ())
        try:
            doc = PolicyDoc.model_validate(tree.data)
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                self.issues.append(_pydantic_issue(tree, err))
            raise PolicyError(self._sorted(), [*self.files, *self.missing]) from None
        for issue in semantic_issues(doc):
            mark, where = _locate(tree, issue.loc)
            message = issue.message
            if issue.other is not None:
                other, _ = _locate(tree, issue.other)
                message += f" (first defined at {other})"
            self.issues.append(_issue(mark, where, message, warning=issue.warning))
        data_files = self._data_files(tree, doc)
        if self._errors():
            raise PolicyError(self._sorted(), [*self.files, *self.missing])
        # content only: the same files loaded through another path spelling are the
        # same policy
        digest = hashlib.sha256()
        for _, raw in self.raw:
            digest.update(hashlib.sha256(raw).digest())
        return compile_policy(
            doc,
            source=source,
            files=tuple(self.files),
            partners_file=data_files.get(("lists", "partners")),
            customers_file=data_files.get(("lists", "customers")),
            suppression_lists={
                str(loc[2]): p
                for loc, p in data_files.items()
                if loc[:2] == ("lists", "suppression")
            },
            store_lists=frozenset(
                n for n, p in doc.lists.suppression.items() if not isinstance(p, str)),
            digest=digest.hexdigest(),
            warnings=tuple(str(i) for i in self._sorted() if i.warning),
        )

    def _errors(self) -> bool:
        return any(not i.warning for i in self.issues)

    def _sorted(self) -> list[PolicyIssue]:
        order = {name: n for n, (name, _) in enumerate(self.raw)}
        return sorted(
            self.issues, key=lambda i: (order.get(i.file, -1), i.line or 0, i.column or 0)
        )

    # -- includes

    def _read_tree(self, source: Path, display: str) -> _Tree | None:
        self.stack.append(source)
        self.files.append(source)
        try:
            own = self._parse(source, display)
            if own is None:
                return None
            merged = _Tree({}, {}, {})
            for target, target_display, mark, where in self._includes(own, source, display):
                resolved = target.resolve()
                if resolved in self.stack:
                    chain = [*self.stack[self.stack.index(resolved) :], resolved]
                    cycle = " -> ".join(p.name for p in chain)
                    self.issues.append(_issue(mark, where, f"include cycle: {cycle}"))
                elif resolved in self.files:
                    message = f"{target_display} is included twice"
                    self.issues.append(_issue(mark, where, message))
                else:
                    sub = self._read_tree(resolved, target_display)
                    if sub is not None:
                        self._merge(merged, sub)
            self._merge(merged, own)
            return merged
        finally:
            self.stack.pop()

    def _includes(
        self, own: _Tree, source: Path, display: str
    ) -> list[tuple[Path, str, Mark, str]]:
        """The files named by `include:` that exist, with where each was named."""
        if "include" not in own.data:
            return []
        value = own.data.pop("include")
        marks = {p: m for p, m in own.values.items() if p[:1] == ("include",)}
        for p in marks:
            own.values.pop(p)
            own.keys.pop(p, None)
        names = [value] if isinstance(value, str) else value
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            message = "expected a file name or a list of file names"
            self.issues.append(_issue(marks[("include",)], "include", message))
            return []
        out: list[tuple[Path, str, Mark, str]] = []
        for i, name in enumerate(names):
            mark = marks.get(("include", i), marks[("include",)])
            where = f"include[{i}]" if isinstance(value, list) else "include"
            target = source.parent / name
            target_display = os.path.normpath(Path(display).parent / name)
            if target.is_file():
                out.append((target, target_display, mark, where))
            else:
                self.missing.append(target.absolute())
                self.issues.append(_issue(mark, where, f"file not found: {target_display}"))
        return out

    def _merge(self, into: _Tree, src: _Tree) -> None:
        offsets: dict[str, int] = {}
        self._merge_map(into, src, into.data, src.data, (), offsets)
        for positions, target in ((src.values, into.values), (src.keys, into.keys)):
            for p, mark in positions.items():
                if len(p) > 1 and p[0] in offsets and isinstance(p[1], int):
                    p = (p[0], p[1] + offsets[str(p[0])], *p[2:])
                target.setdefault(p, mark)

    def _merge_map(
        self,
        into: _Tree,
        src: _Tree,
        dst: dict[str, Any],
        add: dict[str, Any],
        prefix: Loc,
        offsets: dict[str, int],
    ) -> None:
        for key, value in add.items():
            path = (*prefix, key)
            if key not in dst:
                dst[key] = value
            elif not prefix and key in _CONCAT_SECTIONS and _both(list, dst[key], value):
                offsets[key] = len(dst[key])
                dst[key] = dst[key] + value
            elif _both(dict, dst[key], value):
                self._merge_map(into, src, dst[key], value, path, offsets)
            elif not prefix and key == "version" and dst[key] == value:
                continue
            else:
                mark = src.keys[path]
                self.issues.append(
                    _issue(mark, _format_loc(mark.path), f"already set at {into.keys[path]}")
                )

    # -- one YAML file

    def _parse(self, source: Path, display: str) -> _Tree | None:
        try:
            raw = source.read_bytes()
        except OSError as exc:
            self.issues.append(PolicyIssue(display, None, None, "", f"cannot read: {exc.strerror}"))
            return None
        self.raw.append((display, raw))
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            before = raw[: exc.start]
            line = before.count(b"\n") + 1
            column = exc.start - (before.rfind(b"\n") + 1) + 1
            self.issues.append(
                PolicyIssue(
                    display, line, column, "", "expected UTF-8 text (save the file as UTF-8)"
                )
            )
            return None
        loader = yaml.SafeLoader(text)
        tree = _Tree({}, {}, {})
        try:
            node = loader.get_single_node()
            if node is None:  # an empty file is an empty policy fragment
                return tree
            if not isinstance(node, yaml.MappingNode):
                raise _ConvertError(
                    node, "expected a mapping of sections (defaults:, groups:, rules: ...)"
                )
            converter = _Converter(loader, tree, display, source)
            tree.data = converter.convert(node, ())
            return tree
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            problem = exc.problem or exc.context or "invalid YAML"
            if exc.context and exc.problem:
                problem = f"{problem} ({exc.context})"
            self.issues.append(
                PolicyIssue(
                    display,
                    mark.line + 1 if mark else None,
                    mark.column + 1 if mark else None,
                    "",
                    f"YAML syntax error: {problem}",
                )
            )
        except yaml.YAMLError as exc:  # reader errors (control characters) and the like
            self.issues.append(PolicyIssue(display, None, None, "", f"YAML error: {exc}"))
        except _ConvertError as exc:
            mark = _node_mark(exc.node, display, source, ())
            self.issues.append(PolicyIssue(display, mark.line, mark.column, "", exc.message))
        finally:
            loader.dispose()
        return None

    # -- referenced data files

    def _data_files(self, tree: _Tree, doc: PolicyDoc) -> dict[Loc, Path]:
        refs: list[tuple[Loc, str]] = []
        if doc.lists.partners is not None:
            refs.append((("lists", "partners"), doc.lists.partners))
        if doc.lists.customers is not None:
            refs.append((("lists", "customers"), doc.lists.customers))
        refs += [(("lists", "suppression", n), p) for n, p in doc.lists.suppression.items()
                 if isinstance(p, str)]  # {source: store} lists have no file
        out: dict[Loc, Path] = {}
        for loc, name in refs:
            mark, where = _locate(tree, loc)
            # relative to the file that names it, so an included file can carry its lists
            target = mark.source.parent / name
            if not target.is_file():
                self.missing.append(target.absolute())
                shown = os.path.normpath(Path(mark.file).parent / name)
                self.issues.append(_issue(mark, where, f"file not found: {shown}"))
            else:
                out[loc] = target.resolve()
        return out


def _both(kind: type, a: Any, b: Any) -> bool:
    return isinstance(a, kind) and isinstance(b, kind)


def _node_mark(node: yaml.Node, display: str, source: Path, path: Loc) -> Mark:
    return Mark(display, source, node.start_mark.line + 1, node.start_mark.column + 1, path)


class _Converter:
    """Node tree → plain data, recording positions; safe tags only."""

    def __init__(self, loader: yaml.SafeLoader, tree: _Tree, display: str, source: Path) -> None:
        self.loader = loader
        self.tree = tree
        self.display = display
        self.source = source
        self.budget = _MAX_NODES
        self.active: set[int] = set()  # nodes being converted, to catch recursive aliases

    def mark(self, node: yaml.Node, path: Loc) -> Mark:
        return _node_mark(node, self.display, self.source, path)

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


# ---------------------------------------------------------------------------
# Mapping validation errors back to positions


_IDENT = re.compile(r"^[\w-]+$")


def _format_loc(loc: Loc) -> str:
    out = ""
    for comp in loc:
        if isinstance(comp, int):
            out += f"[{comp}]"
        elif _IDENT.match(comp):
            out += f".{comp}" if out else comp
        else:
            out += f"[{comp!r}]"
    return out


def _locate(tree: _Tree, loc: Loc, *, key: bool = False) -> tuple[Mark, str]:
    """The position of the deepest node of `loc` that exists, and the path to show.

    Pydantic adds components that are not in the data (union member names, "[key]" for
    dict keys); they are skipped. A trailing component that does not exist (a missing
    key) is shown but positioned at its parent.
    """
    path: Loc = ()
    tail: Loc = ()
    for i, comp in enumerate(loc):
        if comp == "[key]":
            key = True
        elif (*path, comp) in tree.values:
            path = (*path, comp)
        elif i == len(loc) - 1:
            tail = (comp,)
    mark = (tree.keys.get(path) if key else None) or tree.values[path]
    return mark, _format_loc(mark.path + tail)


def _issue(mark: Mark, where: str, message: str, *, warning: bool = False) -> PolicyIssue:
    return PolicyIssue(mark.file, mark.line, mark.column, where, message, warning)


def _pydantic_issue(tree: _Tree, err: Any) -> PolicyIssue:
    loc: Loc = tuple(err["loc"])
    if loc[:2] == ("lists", "suppression") and len(loc) > 3 and loc[3] in ("file", "store"):
        loc = loc[:3] + loc[4:]  # the form's tag (schema.SuppressionSource) is not a key
    kind: str = err["type"]
    if kind == "missing":
        mark, _ = _locate(tree, loc[:-1])
        return _issue(mark, _format_loc(mark.path), f"missing required key {loc[-1]!r}")
    if kind == "extra_forbidden":
        mark, where = _locate(tree, loc, key=True)
        return _issue(mark, where, _unknown_key(loc))
    mark, where = _locate(tree, loc)
    return _issue(mark, where, _describe(err))


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "nothing (null)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _choices(expected: str) -> str:
    # pydantic writes "'pass', 'tag' or 'reject'"; admins read "pass, tag, reject"
    return ", ".join(part.strip().strip("'") for part in re.split(r", | or ", expected))


_SIMPLE: dict[str, str] = {
    "string_type": "expected text",
    "int_type": "expected a whole number",
    "int_parsing": "expected a whole number",
    "int_from_float": "expected a whole number",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "list_type": "expected a list",
    "dict_type": "expected a mapping (key: value)",
    "model_type": "expected a mapping (key: value)",
    "model_attributes_type": "expected a mapping (key: value)",
    "string_too_short": "expected non-empty text",
}

_BOUNDS = {
    "greater_than_equal": ("ge", ">="),
    "greater_than": ("gt", ">"),
    "less_than_equal": ("le", "<="),
    "less_than": ("lt", "<"),
}


def _describe(err: Any) -> str:
    kind: str = err["type"]
    ctx: dict[str, Any] = err.get("ctx") or {}
    got = _show(err.get("input"))
    if kind in ("enum", "literal_error"):
        return f"expected one of {_choices(str(ctx.get('expected', '')))}; got {got}"
    if kind in _SIMPLE:
        return f"{_SIMPLE[kind]}; got {got}"
    if kind in _BOUNDS:
        name, sign = _BOUNDS[kind]
        return f"expected a number {sign} {ctx.get(name)}; got {got}"
    if kind == "string_too_long":
        return f"expected at most {ctx.get('max_length')} characters; got {got}"
    if kind in ("value_error", "assertion_error"):
        return str(err["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return f"{err['msg']}; got {got}"


def _unwrap(annotation: Any) -> Any:
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, UnionType):
            annotation = next(a for a in get_args(annotation) if a is not type(None))
        else:
            return annotation


def _unknown_key(loc: Loc) -> str:
    """'unknown key' plus the keys that are allowed there (and a likely spelling)."""
    annotation: Any = PolicyDoc
    for comp in loc[:-1]:
        annotation = _unwrap(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(str(comp))
            if field is None:
                break
            annotation = field.annotation
        elif get_origin(annotation) is list and isinstance(comp, int):
            annotation = get_args(annotation)[0]
        elif get_origin(annotation) is dict and isinstance(comp, str):
            annotation = get_args(annotation)[1]
    annotation = _unwrap(annotation)
    message = f"unknown key {loc[-1]!r}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        allowed = list(annotation.model_fields)
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        if close:
            message += f" (did you mean {close[0]!r}?)"
        message += f"; expected one of {', '.join(allowed)}"
    return message
