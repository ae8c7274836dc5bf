"""Validation errors explained: pydantic's error locations mapped back to file positions,
its messages rewritten in the words admins read ("expected one of pass, tag, ...").

Pydantic reports a location inside the merged document (a loc tuple); the YAML tree
(yamltree.Tree) knows where each value and key of it was written.
"""

from __future__ import annotations

import difflib
import re
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic import Tag as FormTag
from pydantic_core import ErrorDetails

from guard.policy.issues import PolicyIssue
from guard.policy.schema import GROUP_KEYS, Loc, PolicyDoc
from guard.policy.yamltree import Mark, Tree

_IDENT = re.compile(r"^[\w-]+$")
_FORM_TAG = re.compile(r"^\{\w+\}$")  # "{all}": which form of a union was tried


def format_loc(loc: Loc) -> str:
    """("rules", 3, "action") -> "rules[3].action", as admins read a place in a policy."""
    out = ""
    for comp in loc:
        if isinstance(comp, int):
            out += f"[{comp}]"
        elif _IDENT.match(comp):
            out += f".{comp}" if out else comp
        else:
            out += f"[{comp!r}]"
    return out


def locate(tree: Tree, loc: Loc, *, key: bool = False) -> tuple[Mark, str]:
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
    return mark, format_loc(mark.path + tail)


def issue_at(mark: Mark, where: str, message: str, *, warning: bool = False) -> PolicyIssue:
    """A problem reported at a position of the tree."""
    return PolicyIssue(mark.file, mark.line, mark.column, where, message, warning)


def validation_issue(tree: Tree, err: ErrorDetails) -> PolicyIssue:
    """One pydantic error, at the position of what it is about, in an admin's words."""
    tagged: Loc = tuple(err["loc"])
    # the forms' tags (schema.SuppressionSource, schema.ConditionItem) are not keys
    loc = tuple(c for i, c in enumerate(tagged) if not (
        isinstance(c, str) and (_FORM_TAG.match(c) or (
            tagged[:2] == ("lists", "suppression") and i == 3 and c in ("file", "store")))))
    kind: str = err["type"]
    if kind == "missing":
        mark, _ = locate(tree, loc[:-1])
        return issue_at(mark, format_loc(mark.path), f"missing required key {loc[-1]!r}")
    if kind == "extra_forbidden":
        mark, where = locate(tree, loc, key=True)
        return issue_at(mark, where, _unknown_key(tagged))
    mark, where = locate(tree, loc)
    return issue_at(mark, where, _describe(err))


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


def _describe(err: ErrorDetails) -> str:
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
    if kind == "too_short":
        n = ctx.get("min_length")
        return f"expected at least {n} item{'s' if n != 1 else ''}; got {got}"
    if kind == "string_too_long":
        return f"expected at most {ctx.get('max_length')} characters; got {got}"
    if kind in ("value_error", "assertion_error"):
        return str(err["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return f"{err['msg']}; got {got}"


def _unwrap(annotation: Any, tag: str | None = None) -> Any:
    """The type under Annotated and Optional; of a tagged union, the member `tag` names."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, UnionType):
            members = [a for a in get_args(annotation) if a is not type(None)]
            annotation = next((a for a in members if tag is not None and any(
                isinstance(m, FormTag) and m.tag == tag
                for m in getattr(a, "__metadata__", ()))), members[0])
        else:
            return annotation


def _keys(model: type[BaseModel]) -> dict[str, str]:
    """The keys admins write (a field's alias, else its name) -> field names."""
    return {(f.alias or name): name for name, f in model.model_fields.items()}


def _unknown_key(loc: Loc) -> str:
    """'unknown key' plus the keys that are allowed there (and a likely spelling)."""
    annotation: Any = PolicyDoc
    for i, comp in enumerate(loc[:-1]):
        if isinstance(comp, str) and _FORM_TAG.match(comp):
            continue  # a union's tag: picked by _unwrap below
        nxt = loc[i + 1] if i + 1 < len(loc) else None
        tag = nxt if isinstance(nxt, str) and _FORM_TAG.match(nxt) else None
        annotation = _unwrap(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            name = _keys(annotation).get(str(comp))
            if name is None:
                break
            annotation = annotation.model_fields[name].annotation
        elif get_origin(annotation) is list and isinstance(comp, int):
            annotation = get_args(annotation)[0]
        elif get_origin(annotation) is dict and isinstance(comp, str):
            annotation = get_args(annotation)[1]
        if tag is not None:
            annotation = _unwrap(annotation, tag)
    annotation = _unwrap(annotation)
    message = f"unknown key {loc[-1]!r}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        allowed = list(_keys(annotation))
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        if close:
            message += f" (did you mean {close[0]!r}?)"
        if set(allowed) <= set(GROUP_KEYS):
            message += (f"; a group holds only its {allowed[0]!r} (put {loc[-1]!r} in a "
                        "condition inside it)")
        else:
            message += f"; expected one of {', '.join(allowed)}"
    return message
