"""A Python client for the encd service: signs requests (RFC 9421) and events locally.

Private keys stay with the caller; the server only ever sees signatures.

    client = Client("http://127.0.0.1:8080", SigningKey.load(party_id, Path("me.key")))
    raw = client.next_event("CQ-2026-000001", "transfer", {"to": buyer}, [client.key])
    receipt = client.submit(raw)
    title = client.verified_title("CQ-2026-000001", log_key)
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit
from urllib.request import getproxies, proxy_bypass

import httpx

from api.media import EVENT_TYPE as EVENT_TYPE  # what every POST sends
from encd.bundle import verify_bundle
from encd.checkpoint import Checkpoint
from encd.errors import Error, InvalidInput, VerificationError
from encd.events import SHA256_HEX, Event, make_event
from encd.httpsig import Request, content_digest, normal_authority, sign_request
from encd.keys import PublicKey, SigningKey
from encd.logentry import LogEntry
from encd.tlogproof import TlogProof
from encd.validation import given, show


class ProblemError(Error):
    """The service answered with an RFC 9457 problem."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        super().__init__(f"{status} {problem.get('title', '')}: {problem.get('detail', '')}")
        self.status = status
        self.problem = problem


class Unreachable(Error):
    """The service could not be reached, or did not answer in time."""


class StreamClosed(Error):
    """The service ended an event stream (the key it was opened with is no longer active)."""


class BadAnswer(Error):
    """The service answered, but not as the API says it answers: a body that is not JSON,
    an answer without a field it always has, a bundle of another media type."""


BUNDLE_TYPE = "application/vnd.encd.bundle+jsonl"  # document bundles and full exports
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]{0,127}")  # an id in a request's path


def _through(base_url: str) -> str:
    """ ", through the proxy <url> (from the environment)" when httpx, which reads the same
    variables, sends requests for ``base_url`` through one: a proxy that is down is
    otherwise taken for the service."""
    url = urlsplit(base_url)
    proxies = getproxies()  # HTTP_PROXY, HTTPS_PROXY, ALL_PROXY (any case), as httpx does
    proxy = proxies.get(url.scheme) or proxies.get("all")
    if not proxy or proxy_bypass(url.hostname or ""):  # NO_PROXY
        return ""
    shown = urlsplit(proxy)
    if shown.username is not None or shown.password is not None:  # never shown
        proxy = proxy.replace(shown.netloc, "…@" + shown.netloc.rsplit("@", 1)[1], 1)
    return f", through the proxy {show(proxy, 80)} (from the environment)"


@dataclass
class Client:
    """One party's client.  ``authority`` is the ``host[:port]`` the requests are addressed
    to (Host) and signed for (``@authority``); default: the base URL's.  Set it to reach a
    service that pins its names (``encd serve --authority``) through another address."""

    base_url: str
    key: SigningKey
    timeout: float = 30.0
    clock: Callable[[], float] = time.time
    authority: str | None = None

    def __post_init__(self) -> None:
        headers = {"host": self.authority} if self.authority else None
        self.http = httpx.Client(base_url=self.base_url, timeout=self.timeout, headers=headers)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- transport -------------------------------------------------------------------------

    def signed_headers(self, method: str, path: str, query: str, body: bytes) -> dict[str, str]:
        if self.authority:
            authority = normal_authority(self.authority)
        else:
            url = urlsplit(self.base_url)
            authority = normal_authority(url.netloc, url.scheme)
        headers: dict[str, str] = {}
        if body:
            headers["content-digest"] = content_digest(body)
        request = Request(method, authority, path, query, headers)
        headers.update(
            sign_request(
                request, self.key, int(self.clock()), secrets.token_urlsafe(16), bool(body)
            )
        )
        return headers

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes = b"",
        params: dict[str, Any] | None = None,
        content_type: str = EVENT_TYPE,
        signed: bool = True,
    ) -> httpx.Response:
        query = urlencode(params or {}, doseq=True)  # (a list: the name repeated)
        headers = self.signed_headers(method, path, query, body) if signed else {}
        if body:
            headers["content-type"] = content_type
        url = path + ("?" + query if query else "")
        try:
            response = self.http.request(method, url, content=body, headers=headers)
        except httpx.TimeoutException:
            raise Unreachable(
                f"the service at {self.base_url} did not answer {method} {path} "
                f"within {self.timeout:g} s"
            ) from None
        except (httpx.HTTPError, httpx.InvalidURL, UnicodeError) as exc:
            # refused, reset, not HTTP, no such host, bad scheme, a host IDNA refuses
            reason = str(exc) or type(exc).__name__
            raise Unreachable(
                f"cannot reach the service at {self.base_url}{_through(self.base_url)}: {reason}"
            ) from None
        if response.status_code >= 400:
            raise _problem(response)
        if response.status_code >= 300:  # not followed: the request was signed for here
            target = show(response.headers.get("location", "nowhere"), 100)
            raise BadAnswer(
                f"the service at {self.base_url} answered {method} {path} with "
                f"{response.status_code}, redirecting to {target}: is the base URL right?"
            )
        return response

    def answer(self, method: str, path: str, **kwargs: Any) -> Any:
        """The JSON body of a successful request (``request``'s arguments)."""
        response = self.request(method, path, **kwargs)
        try:
            return json.loads(response.content, parse_constant=_not_json)
        except (ValueError, RecursionError):  # (RecursionError: nested too deeply)
            kind = response.headers.get("content-type", "no content type")
            raise BadAnswer(
                f"the service at {self.base_url} answered {method} {path} with "
                f"{show(kind, 60)}, not JSON"
            ) from None

    def get(self, path: str, **params: Any) -> Any:
        return self.answer("GET", path, params=params or None)

    def post_event(self, path: str, raw: bytes, **params: Any) -> Any:
        return self.answer("POST", path, body=raw, params=params or None)

    def download(self, path: str, **params: Any) -> bytes:
        """A bundle or an export: its bytes, once the media type says that is what they are."""
        response = self.request("GET", path, params=params or None)
        kind = response.headers.get("content-type", "")
        if kind.split(";")[0].strip().lower() != BUNDLE_TYPE:
            raise BadAnswer(
                f"the service at {self.base_url} answered GET {path} with "
                f"{show(kind or 'no content type', 60)}, not {BUNDLE_TYPE}"
            )
        return response.content

    # --- the API ---------------------------------------------------------------------------

    def service(self) -> Any:
        return self.answer("GET", "/v1/service", signed=False)

    def submit(self, raw: bytes) -> Any:
        return self.post_event("/v1/events", raw)

    def register(self, raw: bytes) -> Any:
        return self.post_event("/v1/parties", raw)

    def party_event(self, party_id: str, raw: bytes) -> Any:
        return self.post_event(f"/v1/parties/{_id(party_id, 'party id')}/events", raw)

    def party(self, party_id: str) -> Any:
        return self.get(f"/v1/parties/{_id(party_id, 'party id')}")

    def title(self, doc_id: str) -> Any:
        return self.get(f"/v1/documents/{_id(doc_id)}/title")

    def document(self, doc_id: str) -> Any:
        return self.get(f"/v1/documents/{_id(doc_id)}")

    def history(self, doc_id: str) -> Any:
        return self.get(f"/v1/documents/{_id(doc_id)}/events")

    def bundle(self, doc_id: str, *, witnessed: int = 0, witnesses: Sequence[str] = ()) -> bytes:
        """The document's bundle; ``witnessed``: against the newest checkpoint cosigned by
        that many witnesses (True: one) of ``witnesses`` (key IDs; none: the service's)."""
        path = f"/v1/documents/{_id(doc_id)}/bundle"
        return self.download(path, **_witnessed(witnessed, witnesses))

    def export(self, *, witnessed: int = 0, witnesses: Sequence[str] = ()) -> bytes:
        """The full export; ``witnessed`` and ``witnesses`` as for ``bundle``."""
        return self.download("/v1/export", **_witnessed(witnessed, witnesses))

    def propose(self, raw: bytes, ttl: int | None = None) -> Any:
        return self.post_event("/v1/proposals", raw, **({"ttl": ttl} if ttl else {}))

    def countersign(self, proposal_id: str, raw: bytes) -> Any:
        return self.post_event(f"/v1/proposals/{_id(proposal_id, 'proposal id')}/signatures", raw)

    def proposals(self, *, limit: int | None = None, after: str | None = None) -> Any:
        """One page of the open proposals the caller signed or must sign, oldest first:
        ``{"proposals": [...], "next": <the after of the next page, or null>}``."""
        params: dict[str, Any] = {} if limit is None else {"limit": str(limit)}
        if after is not None:
            params["after"] = after
        return self.get("/v1/proposals", **params)

    def each_proposal(self, limit: int | None = None) -> Iterator[dict[str, Any]]:
        """Every open proposal the caller signed or must sign, page after page."""
        after: str | None = None
        while True:
            page = self.proposals(limit=limit, after=after)
            yield from page["proposals"]
            after = page["next"]
            if after is None:
                return

    def proposal(self, proposal_id: str) -> Any:
        return self.get(f"/v1/proposals/{_id(proposal_id, 'proposal id')}")

    def checkpoint(self) -> bytes:
        return self.request("GET", "/log/checkpoint", signed=False).content

    def stream(
        self, last_event_id: int | None = None, read_timeout: float | None = 45.0
    ) -> Iterator[dict[str, Any]]:
        """Yield events from the server's event stream as they arrive (blocking).

        The server sends a comment at least every 15 s, so a stream silent for
        ``read_timeout`` seconds is dead: httpx.ReadTimeout says so (None waits forever).
        StreamClosed: the server ended it, the key it was opened with no longer active.
        The iteration ends when the service ends the stream as it stops: call again with
        the last ``index`` yielded to resume.
        """
        import json

        headers = self.signed_headers("GET", "/v1/stream", "", b"")
        if last_event_id is not None:
            headers["last-event-id"] = str(last_event_id)
        timeout = httpx.Timeout(self.timeout, read=read_timeout)
        with self.http.stream("GET", "/v1/stream", headers=headers, timeout=timeout) as response:
            if response.status_code >= 400:
                response.read()
                raise _problem(response)
            kind = "message"
            for line in response.iter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    data = json.loads(line[6:])
                    if kind == "encd-closed":
                        raise StreamClosed(f"the service ended the event stream: {data['reason']}")
                    yield data
                elif not line:
                    kind = "message"

    # --- building events -------------------------------------------------------------------

    def next_event(
        self,
        doc_id: str,
        type: str,
        body: dict[str, Any],
        keys: Sequence[SigningKey] | None = None,
        *,
        time_: Any = None,
    ) -> bytes:
        """An event for the document's current head, signed by ``keys`` (default: ours)."""
        from datetime import UTC, datetime

        head = self.title(doc_id)
        seq, prev = (head.get(name) if isinstance(head, dict) else None for name in ("seq", "head"))
        if isinstance(seq, bool) or not isinstance(seq, int) or not isinstance(prev, str):
            raise BadAnswer(
                f"the service at {self.base_url} answered {doc_id}'s title without "
                "its head's seq and id"
            )
        return make_event(
            keys if keys is not None else [self.key],
            type=type,
            doc=doc_id,
            seq=seq + 1,
            prev=prev,
            time=time_ or datetime.now(UTC),
            body=body,
        )

    def verified_title(self, doc_id: str, log_key: PublicKey) -> dict[str, Any]:
        """The title answer, after checking its proof against the log key we trust."""
        answer: dict[str, Any] = self.title(doc_id)
        verify_title(answer, log_key, doc_id)
        return answer


# The title answer's fields that replaying the document's events gives (DocumentState.to_json)
TITLE_FIELDS = ("status", "holder", "controller", "pledge", "content_version", "location", "seq")


def verify_title(answer: Any, log_key: PublicKey, doc_id: str | None = None) -> Checkpoint:
    """Check a title answer: that it is ``doc_id``'s (when given), and that its head event is
    in the log under a checkpoint the log signed.  That proves the head, not the other
    fields: ``verify_title_replay`` checks those against the document's events.  Anything
    off, a malformed answer included, is a VerificationError.  Returns the checkpoint the
    head is proved under: the answer is as of that tree size, and no proof shows a service
    did not withhold a later one (witnesses' cosignatures do, encd audit step 7)."""
    if not isinstance(answer, dict):
        raise VerificationError(f"a title answer is a JSON object, got {type(answer).__name__}")
    if doc_id is not None and answer.get("document") != doc_id:
        raise VerificationError(
            f"asked for the title of {doc_id}, got one for {given(answer.get('document'))}"
        )
    head = answer.get("head")
    if not isinstance(head, str) or not SHA256_HEX.fullmatch(head):
        raise VerificationError(f"head: expected an event id, got {given(head)}")
    for name in ("head_index", "head_sequenced_at"):
        value = answer.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
            raise VerificationError(f"{name}: expected an integer 0 to 2^63-1, got {given(value)}")
    text = answer.get("tlog_proof")
    if not isinstance(text, str):
        raise VerificationError(f"tlog_proof: expected a string, got {given(text)}")
    try:
        proof = TlogProof.parse(text.encode())
    except UnicodeEncodeError:  # a lone surrogate, which JSON can carry
        raise VerificationError("tlog_proof: not well-formed Unicode (a lone surrogate)") from None
    except InvalidInput as exc:
        raise VerificationError(exc.message) from None
    if proof.index != answer["head_index"]:
        raise VerificationError(
            f"title proof is for log index {proof.index}, not the head's {answer['head_index']}"
        )
    entry = LogEntry(head, answer["head_sequenced_at"])
    return proof.verify(entry.leaf_hash, log_key)


def verify_title_replay(answer: dict[str, Any], bundle: bytes, log_key: PublicKey) -> int:
    """Check a title answer that ``verify_title`` passed against the document's own events:
    ``bundle``, its document bundle (``Client.bundle``), verified against ``log_key``
    (docs/formats/bundle.md) and replayed, must end at the answer's head and give the same
    title fields.  Returns how many entries the bundle held (the document's events and the
    party events they rest on)."""
    doc = answer["document"]
    report = verify_bundle(bundle, log_key)
    state = report.documents.get(doc)
    if report.document != doc or state is None:
        raise VerificationError(f"the bundle sent is not {doc}'s but {report.document}'s")
    if state.head != answer["head"]:
        raise VerificationError(
            f"{doc}'s bundle ends at event {state.head[:16]}…, "
            f"the title's head is {answer['head'][:16]}…"
        )
    replayed = state.to_json(endorsements=False)
    for name in TITLE_FIELDS:
        if name not in answer:
            raise VerificationError(f"{name}: the title answer has no such member")
        if not _same_json(replayed[name], answer[name]):
            raise VerificationError(
                f"{name}: the service says {_said(answer.get(name))}, "
                f"{doc}'s events give {_said(replayed[name])}"
            )
    return report.entries


def _same_json(a: object, b: object) -> bool:
    """Equal as JSON values: of one JSON type each level down, so ``true`` is not ``1``
    and ``1.0`` is not ``1`` (Python's ``==`` says both are)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same_json(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _said(value: object) -> str:
    """A field's value for a message: an object (a pledge, a location) as its JSON."""
    if isinstance(value, dict | list):
        return show(json.dumps(value, sort_keys=True), 160)
    return given(value)


def _witnessed(witnessed: int, witnesses: Sequence[str]) -> dict[str, Any]:
    params: dict[str, Any] = {"witnessed": str(int(witnessed))} if witnessed else {}
    if witnesses:
        params["witness"] = list(witnesses)
    return params


def _not_json(constant: str) -> Any:
    """NaN and Infinity, which Python's json reads but JSON (RFC 8259) has not."""
    raise ValueError(f"{constant} is not JSON")


def _problem(response: httpx.Response) -> ProblemError:
    """The refusal a 4xx or 5xx answer carries (RFC 9457), or what stands in its place."""
    try:
        problem = response.json()
    except (ValueError, RecursionError):
        problem = None
    if not isinstance(problem, dict):  # not a problem document: an HTML error page, say
        problem = {"detail": f"(not a problem document) {show(response.text, 200)}"}
    return ProblemError(response.status_code, problem)


def _id(value: str, what: str = "document id") -> str:
    """An id as one segment of a request's path: letters, digits and ``._~-``, first a
    letter or digit (so no ``/``, ``?``, ``#`` or ``..`` can reach another resource)."""
    if not _SEGMENT.fullmatch(value):
        raise InvalidInput(
            what, f"expected letters, digits and . _ ~ - (at most 128), got {show(value, 60)}"
        )
    return value


def parse_event(raw: bytes) -> Event:
    return Event.parse(raw)
