"""Load a policy: YAML files (with includes) -> validated PolicyDoc -> compiled Policy.

Errors must let an admin fix the file without reading code, so every error names the
file, line and column and what was expected (issues.PolicyIssue). Each file is read
with positions (yamltree.py); includes are merged here, keeping those positions, and
validation errors are mapped back to them (explain.py).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from guard.inspect.owndata import OwnContacts
from guard.policy.checks import recipient_class_issues, semantic_issues, uses_recipient_classes
from guard.policy.compiled import Policy, compile_policy
from guard.policy.datafiles import load_customers, load_own_contacts, load_partner_kinds
from guard.policy.explain import format_loc, issue_at, locate, validation_issue
from guard.policy.issues import PolicyError, PolicyIssue
from guard.policy.schema import Loc, PolicyDoc
from guard.policy.scope import RecipientTables
from guard.policy.yamltree import Mark, Tree, parse_file

POLICY_FILE = "policy.yaml"
# Top-level sections whose lists are concatenated across includes (in include order).
_CONCAT_SECTIONS = frozenset({"rules", "keywords"})


def load_policy(path: str | os.PathLike[str]) -> Policy:
    """Load, validate and compile a policy file, or a folder holding policy.yaml."""
    given = Path(path)
    if given.is_dir():
        given = given / POLICY_FILE
    display = os.path.normpath(given)
    if not given.is_file():
        raise PolicyError([PolicyIssue(display, None, None, "", "policy file not found")])
    return _Loader().load(given.resolve(), display)


class _Loader:
    """One load: the files read, the issues found, the include chain."""

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
                self.issues.append(validation_issue(tree, err))
            raise PolicyError(self._sorted(), [*self.files, *self.missing]) from None
        for issue in semantic_issues(doc):
            mark, where = locate(tree, issue.loc)
            message = issue.message
            if issue.other is not None:
                other, _ = locate(tree, issue.other)
                message += f" (first defined at {other})"
            self.issues.append(issue_at(mark, where, message, warning=issue.warning))
        data_files = self._data_files(tree, doc)
        own_file = data_files.get(("lists", "own_contacts"))
        own = OwnContacts()
        if own_file is not None:
            # read with the policy, so `policy check` shows its bad rows (file:line)
            try:
                own = load_own_contacts(own_file)
            except PolicyError as e:
                self.issues.extend(e.issues)
        tables = None
        if uses_recipient_classes(doc) and not self._errors():
            tables = self._tables(data_files)
            for issue in recipient_class_issues(doc, tables):
                loc = issue.loc
                if loc not in tree.values and loc[:-1] in tree.values:
                    loc = loc[:-1]  # one class written without a list: no [0] to show
                mark, where = locate(tree, loc)
                self.issues.append(issue_at(mark, where, issue.message, warning=issue.warning))
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
            own_contacts_file=own_file,
            own_contacts=own,
            suppression_lists={
                str(loc[2]): p
                for loc, p in data_files.items()
                if loc[:2] == ("lists", "suppression")
            },
            store_lists=frozenset(
                n for n, p in doc.lists.suppression.items() if not isinstance(p, str)),
            digest=digest.hexdigest(),
            warnings=tuple(str(i) for i in self._sorted() if i.warning),
            tables=tables,
        )

    def _errors(self) -> bool:
        return any(not i.warning for i in self.issues)

    def _sorted(self) -> list[PolicyIssue]:
        order = {name: n for n, (name, _) in enumerate(self.raw)}
        return sorted(
            self.issues, key=lambda i: (order.get(i.file, -1), i.line or 0, i.column or 0)
        )

    # -- includes

    def _read_tree(self, source: Path, display: str) -> Tree | None:
        self.stack.append(source)
        self.files.append(source)
        try:
            own = self._parse(source, display)
            if own is None:
                return None
            merged = Tree({}, {}, {})
            for target, target_display, mark, where in self._includes(own, source, display):
                resolved = target.resolve()
                if resolved in self.stack:
                    chain = [*self.stack[self.stack.index(resolved) :], resolved]
                    cycle = " -> ".join(p.name for p in chain)
                    self.issues.append(issue_at(mark, where, f"include cycle: {cycle}"))
                elif resolved in self.files:
                    message = f"{target_display} is included twice"
                    self.issues.append(issue_at(mark, where, message))
                else:
                    sub = self._read_tree(resolved, target_display)
                    if sub is not None:
                        self._merge(merged, sub)
            self._merge(merged, own)
            return merged
        finally:
            self.stack.pop()

    def _includes(
        self, own: Tree, source: Path, display: str
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
            self.issues.append(issue_at(marks[("include",)], "include", message))
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
                self.issues.append(issue_at(mark, where, f"file not found: {target_display}"))
        return out

    def _merge(self, into: Tree, src: Tree) -> None:
        offsets: dict[str, int] = {}
        self._merge_map(into, src, into.data, src.data, (), offsets)
        for positions, target in ((src.values, into.values), (src.keys, into.keys)):
            for p, mark in positions.items():
                if len(p) > 1 and p[0] in offsets and isinstance(p[1], int):
                    p = (p[0], p[1] + offsets[str(p[0])], *p[2:])
                target.setdefault(p, mark)

    def _merge_map(
        self,
        into: Tree,
        src: Tree,
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
                    issue_at(mark, format_loc(mark.path), f"already set at {into.keys[path]}")
                )

    # -- one YAML file
    def _parse(self, source: Path, display: str) -> Tree | None:
        parsed = parse_file(source, display)
        if parsed.raw is not None:
            self.raw.append((display, parsed.raw))
        self.issues.extend(parsed.issues)
        return parsed.tree

    # -- referenced data files

    def _tables(self, data_files: dict[Loc, Path]) -> RecipientTables:
        """Customers and partners by domain, for the scopes that name them; a bad row
        is an error of this load (a half-read table would silently match fewer)."""
        customers: dict[str, str] = {}
        partners: dict[str, frozenset[str]] = {}
        try:
            if ("lists", "customers") in data_files:
                for c in load_customers(data_files[("lists", "customers")]):
                    for d in c.domains:
                        customers.setdefault(d, c.name)
            if ("lists", "partners") in data_files:
                partners = load_partner_kinds(data_files[("lists", "partners")])
        except PolicyError as e:
            self.issues.extend(e.issues)
        return RecipientTables(customers, partners)

    def _data_files(self, tree: Tree, doc: PolicyDoc) -> dict[Loc, Path]:
        refs: list[tuple[Loc, str]] = []
        if doc.lists.partners is not None:
            refs.append((("lists", "partners"), doc.lists.partners))
        if doc.lists.customers is not None:
            refs.append((("lists", "customers"), doc.lists.customers))
        if doc.lists.own_contacts is not None:
            refs.append((("lists", "own_contacts"), doc.lists.own_contacts))
        refs += [(("lists", "suppression", n), p) for n, p in doc.lists.suppression.items()
                 if isinstance(p, str)]  # {source: store} lists have no file
        out: dict[Loc, Path] = {}
        for loc, name in refs:
            mark, where = locate(tree, loc)
            # relative to the file that names it, so an included file can carry its lists
            target = mark.source.parent / name
            if not target.is_file():
                self.missing.append(target.absolute())
                shown = os.path.normpath(Path(mark.file).parent / name)
                self.issues.append(issue_at(mark, where, f"file not found: {shown}"))
            else:
                out[loc] = target.resolve()
        return out


def _both(kind: type, a: Any, b: Any) -> bool:
    return isinstance(a, kind) and isinstance(b, kind)
