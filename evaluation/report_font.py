"""The Chinese font embedded in report.html, so that the page reads the same on a machine without CJK fonts.

The package ships a subset of Noto Sans CJK SC (``data/fonts/``, SIL Open Font License; GB2312 plus ASCII and
punctuation). :func:`font_face_css` cuts it down again to exactly the characters of one page and returns an
``@font-face`` rule whose ``src`` is a ``data:font/woff2;base64,…`` URI: a few tens to a few hundred KB instead of the
whole font, and nothing fetched when the page opens.
"""

from __future__ import annotations

import base64
import io
from functools import lru_cache

from helpdesk_triage.policy.data_files import data_file

__all__ = ["FONT_FAMILY", "SHIPPED_FONT", "font_face_css", "page_font_bytes"]

SHIPPED_FONT = data_file("fonts/NotoSansCJKsc-Regular-GB2312.woff2")
FONT_FAMILY = "Report Noto Sans SC"  # the page's own name for the embedded subset


@lru_cache(maxsize=1)
def _shipped_font_bytes() -> bytes:
    return SHIPPED_FONT.read_bytes()


def page_font_bytes(text: str) -> bytes:
    """The shipped font reduced to the characters of ``text`` (those it has), as WOFF2 bytes."""
    from fontTools import subset
    from fontTools.ttLib import TTFont

    font = TTFont(io.BytesIO(_shipped_font_bytes()))
    options = subset.Options()
    options.flavor = "woff2"
    options.layout_features = ["kern"]
    options.notdef_outline = True
    options.hinting = False
    # The font's licence and copyright travel inside it (OFL condition 2): keep those name records.
    options.name_IDs = [0, 1, 2, 3, 4, 5, 6, 7, 13, 14]
    options.ignore_missing_unicodes = True
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes={ord(c) for c in set(text) if not c.isspace()} | {0x20})
    subsetter.subset(font)
    out = io.BytesIO()
    font.flavor = "woff2"
    font.save(out)
    return out.getvalue()


def font_face_css(text: str) -> str:
    """An ``@font-face`` rule naming :data:`FONT_FAMILY`, the page's characters embedded as a data URI."""
    data = base64.b64encode(page_font_bytes(text)).decode("ascii")
    return (
        f'@font-face {{ font-family: "{FONT_FAMILY}"; font-style: normal; font-weight: 400;'
        f' src: url("data:font/woff2;base64,{data}") format("woff2"); }}'
    )
