"""Zip archives: every member is read like an attachment of its own, one level deeper.
Member names are checked too; encrypted members are counted and reported."""

from __future__ import annotations

import posixpath
import zipfile

from guard.inspect.readers.extraction import Extraction
from guard.inspect.readers.limits import LimitHit
from guard.inspect.readers.ziparchive import ZipArchive, member_name
from guard.mail.message import Attachment


def read(ex: Extraction, zf: ZipArchive, att: Attachment, depth: int) -> None:
    infos = [i for i in zf.infolist() if not i.is_dir()]
    if len(infos) > ex.limits.max_files_per_archive:
        ex.problem("too_many_parts", att.where,
                   f"{len(infos)} files > {ex.limits.max_files_per_archive}")
        infos = infos[: ex.limits.max_files_per_archive]
    encrypted = 0
    members: list[tuple[zipfile.ZipInfo, str]] = []
    for info in infos:
        name = member_name(info)
        ex.inner_name(f"{att.where}/{name}", name)
        if info.flag_bits & 0x1 or info.compress_type == 99:  # ZipCrypto / WinZip AES
            encrypted += 1
        else:
            members.append((info, name))
    if encrypted:
        ex.problem("encrypted", att.where, f"{encrypted} encrypted member(s)")
    for info, name in members:
        member_where = f"{att.where}/{name}"
        if depth + 1 > ex.limits.max_depth:
            ex.problem("too_deep", member_where, f"nesting depth > {ex.limits.max_depth}")
            continue
        try:
            data = ex.member_bytes(zf, info)
        except LimitHit as e:
            ex.problem(e.code, member_where, e.detail)
            if e.code == "bomb":
                return  # the rest of a bomb archive is not worth reading
            continue
        except (zipfile.BadZipFile, NotImplementedError, RuntimeError, OSError,
                EOFError, ValueError) as e:
            ex.problem("parse_error", member_where, f"{type(e).__name__}: {e}")
            continue
        ex.run(Attachment(filename=posixpath.basename(name), content_type="",
                          data=data, where=member_where), depth + 1)
