"""Pure parsers for what WebDAV servers answer: PROPFIND multistatus bodies (RFC 4918, with the
RFC 4331 quota properties) and RFC 3230 `Digest` headers. No I/O; unit-tested on captured
server output.

The XML comes from an SE we reached over verified TLS, but a parser should not trust it: a
document with a DTD (where entity-expansion bombs and external entities live) is refused.
WebDAV answers never carry one. expat never fetches external entities, and expat ≥ 2.4 also
bounds entity amplification; refusing DTDs outright is what defusedxml does, here in a few
lines of the standard library and without another dependency.
"""

from __future__ import annotations

import string
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import NoReturn
from urllib.parse import unquote, urlsplit
from xml.parsers import expat

from wrapper.se.base import SpaceUsage

_DAV = "{DAV:}"

# PROPFIND bodies: ask only for what we read (some servers are slow at computing allprop).
LIST_BODY = (
    b'<?xml version="1.0" encoding="utf-8"?>\n'
    b'<D:propfind xmlns:D="DAV:"><D:prop><D:resourcetype/><D:getcontentlength/>'
    b"</D:prop></D:propfind>\n"
)
QUOTA_BODY = (
    b'<?xml version="1.0" encoding="utf-8"?>\n'
    b'<D:propfind xmlns:D="DAV:"><D:prop><D:quota-available-bytes/><D:quota-used-bytes/>'
    b"</D:prop></D:propfind>\n"
)


class DavParseError(ValueError):
    """The server's answer is not a multistatus document we can read."""


@dataclass(frozen=True)
class DavEntry:
    """One `DAV:response` of a multistatus: a resource and the properties found (status 2xx)."""

    # The URL path, percent-decoded, without a trailing slash ("/se/belle/a b.root").
    path: str
    is_collection: bool
    size: int | None = None
    quota_available: int | None = None
    quota_used: int | None = None


def _refuse_dtd(*_args: object) -> NoReturn:
    raise DavParseError("refusing an XML document with a DTD or entity declarations")


def _tag(name: str) -> str:
    """expat's 'DAV: href' -> ElementTree's '{DAV:}href'."""
    namespace, _, local = name.rpartition(" ")
    return f"{{{namespace}}}{local}" if namespace else local


def _parse_xml(body: bytes) -> ET.Element:
    # expat itself, not ET.XMLParser: the C XMLParser offers no hook to refuse a DTD.
    builder = ET.TreeBuilder()
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.StartDoctypeDeclHandler = _refuse_dtd
    parser.EntityDeclHandler = _refuse_dtd
    parser.StartElementHandler = lambda name, _attributes: builder.start(_tag(name), {})
    parser.EndElementHandler = lambda name: builder.end(_tag(name))
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(body, True)
    except expat.ExpatError as exc:
        raise DavParseError(f"not well-formed XML: {exc}") from exc
    return builder.close()


def _status_ok(status_line: str) -> bool:
    """'HTTP/1.1 200 OK' -> True; a propstat without a status counts as found."""
    parts = status_line.split()
    return len(parts) < 2 or parts[1].startswith("2")


def _int(element: ET.Element | None) -> int | None:
    text = (element.text or "").strip() if element is not None else ""
    return int(text) if text.isdigit() else None


def parse_multistatus(body: bytes) -> list[DavEntry]:
    """The entries of a PROPFIND answer, in document order."""
    root = _parse_xml(body)
    if root.tag != f"{_DAV}multistatus":
        raise DavParseError(f"expected a DAV:multistatus document, got <{root.tag}>")
    entries: list[DavEntry] = []
    for response in root.iterfind(f"{_DAV}response"):
        href = (response.findtext(f"{_DAV}href") or "").strip()
        if not href:
            continue
        props: dict[str, ET.Element] = {}
        for propstat in response.iterfind(f"{_DAV}propstat"):
            if _status_ok(propstat.findtext(f"{_DAV}status") or ""):
                props.update((prop.tag, prop) for prop in propstat.iterfind(f"{_DAV}prop/*"))
        resourcetype = props.get(f"{_DAV}resourcetype")
        entries.append(
            DavEntry(
                path=unquote(urlsplit(href).path).rstrip("/") or "/",
                is_collection=resourcetype is not None
                and resourcetype.find(f"{_DAV}collection") is not None,
                size=_int(props.get(f"{_DAV}getcontentlength")),
                quota_available=_int(props.get(f"{_DAV}quota-available-bytes")),
                quota_used=_int(props.get(f"{_DAV}quota-used-bytes")),
            )
        )
    return entries


def children(
    entries: list[DavEntry], base_path: str, lfn: str
) -> tuple[list[str], list[str]] | None:
    """(files, collections) inside collection `lfn`, as LFNs, from its Depth: 1 PROPFIND
    answer; None when `lfn` turns out to be a file."""
    files: list[str] = []
    collections: list[str] = []
    for entry in entries:
        rel = relative_lfn(entry.path, base_path)
        if rel is None:  # the SE's base itself, or outside it
            continue
        if rel == lfn.rstrip("/"):  # the collection asked about
            if not entry.is_collection:
                return None
        elif entry.is_collection:
            collections.append(rel)
        else:
            files.append(rel)
    return files, collections


def space_usage(entries: list[DavEntry]) -> SpaceUsage | None:
    """What the RFC 4331 quota properties say (total = available + used); None without them."""
    for entry in entries:
        if entry.quota_available is not None and entry.quota_used is not None:
            total = entry.quota_available + entry.quota_used
            return SpaceUsage(total_bytes=total, free_bytes=entry.quota_available)
    return None


def relative_lfn(path: str, base_path: str) -> str | None:
    """The LFN of a decoded URL path under the SE's base path; None when outside it."""
    base = base_path.rstrip("/")
    if not path.startswith(base + "/"):
        return None
    lfn = path[len(base) :].rstrip("/")
    return lfn or None


def parse_digest(header: str, algorithm: str = "adler32") -> str | None:
    """The value for `algorithm` in an RFC 3230 `Digest` header ("adler32=0a1b2c3d,
    md5=..."), as 8 lowercase hex digits; None when absent or not hex."""
    for item in header.split(","):
        name, sep, value = item.strip().partition("=")
        if not sep or name.strip().lower() != algorithm:
            continue
        value = value.strip().strip('"').lower()
        if 1 <= len(value) <= 8 and all(c in string.hexdigits for c in value):
            return value.zfill(8)
    return None
