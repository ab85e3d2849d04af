"""The web pages: the service's front page, and a page that checks a title in the browser.

GET /              what this service is: its log (origin, size, root, key) and where to go
GET /verify        check a title: ask the service with your key, or paste an answer; the
                   browser checks the proof against the log key you trust (docs/web.md)
GET /sign          sign an event in the browser: endorse, surrender, reject an endorsement,
                   release or enforce a pledge, propose a pledge, countersign a proposal; the
                   page shows the exact
                   event, signs it, submits it and checks its receipt
GET /web/<file>    the pages' script and style sheet

Public, like the log: they show nothing but the log's head and key.  A party's key file is
read by the browser and never sent; the page signs its request itself (design.md §6).
Each page forbids every source but this service's own files (Content-Security-Policy), so
no script of another origin, and no inline one, runs beside the key.
"""

from __future__ import annotations

import base64
import functools
from html import escape
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import Response

from api.problems import NotFoundProblem
from api.routes.common import StateDep
from encd.checkpoint import Checkpoint
from encd.note import parse_note
from encd.validation import show

router = APIRouter(include_in_schema=False)

#: The pages' own files, and how each is served: nothing outside this list is.
ASSETS = {
    "encd.js": "text/javascript; charset=utf-8",
    "verify.js": "text/javascript; charset=utf-8",
    "sign.js": "text/javascript; charset=utf-8",
    "page.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "icon.svg": "image/svg+xml",
}

HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
    # A page of this origin without this header (FastAPI's /docs, which loads its scripts
    # from a CDN) that opens one of these gets no handle on it: different opener policies
    # put the two in separate browsing context groups.
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


@functools.cache
def _asset(name: str) -> bytes:
    return resources.files("api").joinpath("web", name).read_bytes()


def _page(title: str, origin: str, body: str, script: str | None = None) -> Response:
    tag = f'<script type="module" src="/web/{script}"></script>' if script else ""
    html = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} — encd</title>
<link rel="stylesheet" href="/web/style.css">
<link rel="icon" href="/web/icon.svg" type="image/svg+xml">
{tag}
</head>
<body>
<header>
<a class="brand" href="/">encd</a> <span class="origin">{escape(origin)}</span>
<nav><a href="/">The log</a> <a href="/verify">Check a title</a> <a href="/sign">Sign an event</a>
<a href="/docs">API</a></nav>
</header>
<main>
{body}
</main>
</body>
</html>
"""
    return Response(html, media_type="text/html; charset=utf-8", headers=HEADERS)


@router.get("/")
def home(state: StateDep) -> Response:
    """The service and its log: what a visitor can check without a key."""
    service = state.service
    note = state.ledger.checkpoint()
    head = Checkpoint.parse(parse_note(note).text)
    signed = state.ledger.cosigned(note, head.size).decode()
    root = base64.b64encode(head.root).decode()
    body = f"""
<h1>An eNCD ledger</h1>
<p>This service keeps electronic negotiable cargo documents: carriers issue them, traders
endorse them, banks take them in pledge and release them.  Every change of title is a
signed event in one append-only Merkle log, and every answer about a document comes with a
proof that you can check yourself.</p>
<h2>The log</h2>
<dl class="facts">
<dt>Origin</dt><dd><code id="origin">{escape(head.origin)}</code></dd>
<dt>Events logged</dt><dd id="size">{head.size}</dd>
<dt>Root hash</dt><dd><code id="root">{escape(root)}</code></dd>
<dt>Log key</dt><dd><code id="log-key">{escape(service.log_key.public.vkey)}</code></dd>
<dt>Operator</dt><dd><code id="operator">{escape(service.operator_id)}</code></dd>
</dl>
<p>The latest checkpoint, as the log signed it (<a href="/log/checkpoint">/log/checkpoint</a>,
a C2SP signed note):</p>
<pre id="checkpoint">{escape(signed)}</pre>
<p class="hint">The log key above is the one this service names.  Trust it only once it
matches the key the operator gave you by other means: a service that was not what it
claims would name its own.</p>
<h2>What you can do here</h2>
<ul>
<li><a href="/verify">Check a title</a>: who holds a document, whether it is pledged and
to whom, with its proof checked in your browser.</li>
<li><a href="/sign">Sign an event</a>: endorse or surrender a document you hold, reject an
endorsement to you, propose a pledge, countersign one as the bank, release or enforce a
pledge you hold; signed in your browser with your key file.</li>
<li><a href="/docs">The API</a>, and its <a href="/openapi.json">OpenAPI description</a>.</li>
<li>Read the log as <a href="/log/checkpoint">C2SP tlog-tiles</a>: hashes only, no content.</li>
</ul>
"""
    return _page("The log", service.origin, body)


def _trust(vkey: str) -> str:
    return f"""
<div id="trust" class="fields">
<label for="log-key">Log key you trust</label>
<input id="log-key" name="log-key" spellcheck="false" autocomplete="off" value="{escape(vkey)}">
<p class="hint">Filled in with the key this service names.  Compare it with the key the
operator gave you: a proof checked against a key the service chose proves nothing.</p>
</div>"""


#: The caller's key: read by the page, never sent.
_KEY_FIELDS = """
<label for="party">Your party id</label>
<input id="party" name="party" spellcheck="false" required>
<label for="key-file">Your key file (PKCS#8 PEM, as <code>encd keygen</code> writes)</label>
<input id="key-file" name="key-file" type="file" required>
<label for="passphrase">Its passphrase, if it is encrypted</label>
<input id="passphrase" name="passphrase" type="password">"""


@router.get("/verify")
def verify(state: StateDep) -> Response:
    """The page that checks a title answer in the browser (api/web/verify.js)."""
    service = state.service
    body = f"""
<h1>Check a title</h1>
<p>Who holds a document, who controls it, whether it is pledged and to whom: asked of this
service and checked here, in your browser, against the log key you trust.  Your key file
is read by this page and never sent; the page signs its request with it.</p>

{_trust(service.log_key.public.vkey)}

<section>
<h2>Ask the service</h2>
<form id="ask" autocomplete="off">{_KEY_FIELDS}
<label for="document">Document id</label>
<input id="document" name="document" spellcheck="false" required>
<button type="submit">Ask and check</button>
</form>
</section>

<section>
<h2>Or check an answer you have</h2>
<form id="paste" autocomplete="off">
<label for="pasted-document">Document id</label>
<input id="pasted-document" name="pasted-document" spellcheck="false" required>
<label for="answer">A title answer (the JSON of <code>GET /v1/documents/{{id}}/title</code>)</label>
<textarea id="answer" name="answer" rows="8" spellcheck="false" required></textarea>
<button type="submit">Check</button>
</form>
</section>

<section id="result" aria-live="polite" hidden></section>
"""
    return _page("Check a title", service.origin, body, script="verify.js")


@router.get("/sign")
def sign(state: StateDep) -> Response:
    """The page that signs an event in the browser (api/web/sign.js)."""
    service = state.service
    body = f"""
<h1>Sign an event</h1>
<p>Endorse or surrender a document you hold, reject an endorsement made to you, release or
enforce a pledge you hold, propose a pledge of a document you hold, or countersign a
proposal that waits for you (a bank, a pledge to it).  The page reads the document's head from this service and
checks its proof, builds the event that follows it, and shows you its exact text.  Only
when you choose to does it sign the event with your key, which never leaves this page,
submit it, and check the receipt against the log key you trust.</p>
{_trust(service.log_key.public.vkey)}
<div id="who" class="fields">{_KEY_FIELDS}
</div>

<h2>An event of your own</h2>
<form id="prepare" autocomplete="off">
<label for="document">Document id</label>
<input id="document" name="document" spellcheck="false" required>
<label for="action">What to sign</label>
<select id="action" name="action">
<option value="transfer">Endorse (transfer) the document to another party</option>
<option value="reject_transfer">Reject the endorsement just made to you</option>
<option value="release">Release the pledge you hold</option>
<option value="pledge">Propose a pledge of the document to a bank</option>
<option value="surrender">Surrender the document to the carrier for delivery</option>
<option value="enforce">Enforce the pledge you hold (take the document as pledgee)</option>
</select>
<div id="to-fields" class="fields">
<label for="to">Endorsee's party id</label>
<input id="to" name="to" spellcheck="false">
<label class="check"><input id="blank" name="blank" type="checkbox"> In blank (the endorsement
names no endorsee; the party above still receives control)</label>
</div>
<div id="reason-fields" class="fields" hidden>
<label for="reason">Reason (optional)</label>
<textarea id="reason" name="reason" rows="3"></textarea>
</div>
<div id="pledge-fields" class="fields" hidden>
<label for="pledgee">The bank's party id (the pledgee)</label>
<input id="pledgee" name="pledgee" spellcheck="false">
<label for="loan-ref">Loan reference</label>
<input id="loan-ref" name="loan-ref" spellcheck="false">
<label for="amount">Amount (a decimal, e.g. 100000.00)</label>
<input id="amount" name="amount" inputmode="decimal" spellcheck="false">
<label for="currency">Currency (ISO 4217, e.g. USD)</label>
<input id="currency" name="currency" maxlength="3" spellcheck="false">
<label for="registry-ref">Pledge registry reference</label>
<input id="registry-ref" name="registry-ref" spellcheck="false">
<label for="maturity">Maturity</label>
<input id="maturity" name="maturity" type="date">
</div>
<button type="submit">Prepare</button>
</form>

<section id="result" aria-live="polite" hidden></section>

<section id="prepared" hidden>
<h2>The event to sign</h2>
<p class="hint">Its text, exactly as your key will sign it (docs/formats/events.md):</p>
<pre id="event-text"></pre>
<button id="submit" type="button">Sign and submit</button>
</section>

<h2>Countersign a proposal</h2>
<p>An event that needs your signature beside another party's (a pledge to your bank, an
amendment) waits as a proposal until every party has signed it.</p>
<button id="list" type="button">Show proposals waiting for my signature</button>
<div id="proposals"></div>
"""
    return _page("Sign an event", service.origin, body, script="sign.js")


@router.get("/web/{name}")
def asset(name: str) -> Response:
    """One of the pages' own files."""
    media_type = ASSETS.get(name)
    if media_type is None:
        raise NotFoundProblem(f"no such file: {show(name, 60)}")
    return Response(_asset(name), media_type=media_type, headers=HEADERS)
