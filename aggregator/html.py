"""What every HTML page of the site shares: one stylesheet, the Content-Security-Policy that
allows only it, and the frame around a page's body.

The served pages (the index, search) and the static item pages publish writes use the same
bytes, so the policy's style hash holds for all of them. No page runs a script.
"""

from __future__ import annotations

import base64
import hashlib
from html import escape

STYLE = (
    "body{font:16px/1.5 system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;"
    "color:#1a1a1a;background:#fff;overflow-wrap:break-word}"
    "h1{font-size:1.5rem;line-height:1.25}h2{font-size:1.2rem;margin-top:2rem}"
    "a{color:#0b4f9c}ul,ol{padding-left:1.2rem}li{margin:.5rem 0}"
    ".meta,.sub{color:#555;font-size:.9rem}.formats a{margin-right:.75rem}"
    ".search{display:flex;flex-wrap:wrap;gap:.5rem;margin:1.5rem 0}"
    ".search label{flex-basis:100%;font-weight:600}"
    ".search input{flex:1 1 12rem;min-width:0;font:inherit;padding:.35rem .5rem;"
    "border:1px solid #888;border-radius:4px}.search button{font:inherit;padding:.35rem 1rem}"
    "mark{background:#fff0a0;color:inherit}.empty{color:#8a4b00;font-size:.9rem}"
    ".problem{color:#a00}code{background:#f2f2f2;padding:0 .2rem}"
    ".facts{display:grid;grid-template-columns:max-content minmax(0,1fr);gap:.2rem 1rem;"
    "margin:1rem 0}.facts dt{color:#555}.facts dd{margin:0;overflow-wrap:anywhere}"
    "@media (max-width:30rem){.facts{grid-template-columns:minmax(0,1fr);gap:0}"
    ".facts dd{margin-bottom:.4rem}}"
    ".text{border-top:1px solid #ddd;margin-top:1.5rem;padding-top:.5rem}"
    ".text img{max-width:100%;height:auto}.text pre{overflow-x:auto}"
    ".text table{display:block;overflow-x:auto;border-collapse:collapse}"
    ".text td,.text th{border:1px solid #ccc;padding:.2rem .4rem}"
    ".text blockquote{margin:1rem 0;padding-left:1rem;border-left:3px solid #ccc}"
    ".reasons{margin:.25rem 0 0;color:#333;font-size:.9rem}.reasons li{margin:.15rem 0}"
)
_STYLE_HASH = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
# No scripts, no frames, no outside resources (an article's images included: a page of the
# archive makes no request to another site): only the one inline style block above, and
# forms that send to this site (the search box).
_POLICY = (
    f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; base-uri 'none'; form-action 'self'"
)
CSP = f"{_POLICY}; frame-ancestors 'none'"
META_CSP = _POLICY  # a <meta> policy cannot say frame-ancestors (browsers ignore it there)
_HEAD = (
    '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
    f'<meta http-equiv="Content-Security-Policy" content="{escape(META_CSP)}">\n'
    '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
    '<meta name="referrer" content="no-referrer">\n'
)


def page(title: str, body: str, *, head: str = "") -> str:
    """A whole document: `title` is text (escaped here); `body` and `head` are HTML the caller
    built, every value in them escaped already. The policy rides along as a <meta> so that
    a static web server serving the file keeps it."""
    return (
        f"{_HEAD}<title>{escape(title)}</title>\n{head}<style>{STYLE}</style>\n</head>\n"
        f"<body>\n{body}</body>\n</html>\n"
    )
