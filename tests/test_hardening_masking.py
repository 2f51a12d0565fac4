"""Secrets never reach the log, ``saga show`` or telemetry in clear, whatever text carries them.

A step given secret fields raises exceptions whose text holds them in many
shapes (an ``OSError``'s file name, a dict, bytes, a pydantic validation
error, a failed subprocess, an exception with its own ``__str__``), and calls
a real HTTP service on loopback with a secret in its path. The rows of the
log are read raw, ``saga show`` runs as a real process, and spans are read
from OpenTelemetry's in-memory exporter.
"""

from __future__ import annotations

import contextlib
import errno
import json
import socket
import subprocess
import sys
import urllib.parse
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, SecretStr

from saga import Coordinator, EventStore, Retry, Saga, SagaStatus, StepContext
from saga.adapters import ConnectionFailed, Http
from saga.secrets.keys import MASK, generate_key
from saga.secrets.masking import Mask
from tests.cli_run import ok
from tests.loopback import Reply, Service
from tests.test_secret_fields import raw_log
from tests.test_telemetry import Otel, otel  # noqa: F401 (the fixture)

CARD = "4111-2222-3333-4444"
PHRASE = "Zürich\\vault's key"  # escaped differently by repr, bytes and URLs
TOKEN = "tk_live_" + "9f8e7d6c5b4a3f2e1d0c" * 3  # long: pydantic shortens it when it quotes it
SECRETS = (CARD, PHRASE, TOKEN)
FRAGMENT = 12
"""No run of this many characters of a secret (in any of its usual spellings) may show."""


class Payment(BaseModel):
    payer: str
    card: SecretStr
    phrase: SecretStr
    token: SecretStr


class Amount(BaseModel):
    cents: int


class CardDeclined(Exception):
    """An exception whose text does not come from its arguments."""

    def __init__(self, card: str) -> None:
        super().__init__()
        self.card = card

    def __str__(self) -> str:
        return f"card {self.card} declined"


def _os_error(p: Payment) -> Exception:
    return OSError(errno.ENOENT, "No such file or directory", f"/vault/{p.card.get_secret_value()}")


def _dict(p: Payment) -> Exception:
    return ValueError({"card": p.card.get_secret_value(), "phrase": p.phrase.get_secret_value()})


def _bytes(p: Payment) -> Exception:
    return ValueError(p.card.get_secret_value().encode() + b" " + p.phrase.get_secret_value().encode())


def _validation(p: Payment) -> Exception:
    try:
        Amount.model_validate({"cents": p.token.get_secret_value()})
    except Exception as e:
        return e
    raise AssertionError("the token is not a number")


def _subprocess(p: Payment) -> Exception:
    try:
        subprocess.run([sys.executable, "-c", "raise SystemExit(3)", p.card.get_secret_value(),
                        p.phrase.get_secret_value()], check=True, capture_output=True)
    except subprocess.CalledProcessError as e:
        return e
    raise AssertionError("the process exits with 3")


def _own_str(p: Payment) -> Exception:
    return CardDeclined(p.card.get_secret_value())


def _long(p: Payment) -> Exception:
    """A message far over the log's limit (4,000 characters), cut eight characters into a secret."""
    return ValueError("x" * 3992 + p.token.get_secret_value() + "y" * 100_000)


RAISES: dict[str, Callable[[Payment], Exception]] = {
    "OSError with a file name": _os_error,
    "ValueError of a dict": _dict,
    "ValueError of bytes": _bytes,
    "pydantic ValidationError": _validation,
    "CalledProcessError": _subprocess,
    "an exception with its own __str__": _own_str,
    "a long message cut at the limit": _long,
}


def spellings(secret: str) -> set[str]:
    """How a secret commonly shows in text: as it is, quoted by repr (in a text that holds either
    quote or both), as bytes, as JSON, in a URL."""
    return {secret, repr(secret)[1:-1], repr(secret + "'\"")[1:-4], repr(secret.encode())[2:-1],
            urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret),
            json.dumps(secret)[1:-1]}


def leaks(text: str, secrets: tuple[str, ...] = SECRETS) -> list[str]:
    """The pieces of secrets found in ``text``: any run of ``FRAGMENT`` characters of a spelling."""
    found = []
    for secret in secrets:
        for form in spellings(secret):
            n = min(FRAGMENT, len(form))
            found += [form[i:i + n] for i in range(len(form) - n + 1) if form[i:i + n] in text]
    return found


CONTAINERS: dict[str, Callable[[str], str]] = {
    "as it is": str,
    "in a dict": lambda t: str({"value": t}),
    "with both quotes": lambda t: repr(t + "'\""),
    "as bytes": lambda t: str(t.encode()),
    "as JSON": lambda t: json.dumps({"value": t}),
    "in a URL path": lambda t: "http://h/" + urllib.parse.quote(t, safe=""),
    "in a URL query": lambda t: "http://h/?" + urllib.parse.urlencode({"q": t}),
}


@settings(max_examples=300, deadline=None)
@given(secret=st.text(st.characters(exclude_categories=["Cs"], exclude_characters="*"), min_size=3,
                      max_size=80),
       around=st.tuples(st.text(max_size=10), st.text(max_size=10)),
       container=st.sampled_from(sorted(CONTAINERS)), cut=st.floats(0, 1))
def test_a_secret_is_masked_however_a_text_spells_it_or_cuts_it(
        secret: str, around: tuple[str, str], container: str, cut: float) -> None:
    whole = CONTAINERS[container](around[0] + secret + around[1])
    text = whole[:round(len(whole) * cut)]  # cut short, as messages often are
    assert leaks(Mask([secret])(text), (secret,)) == []
    assert leaks(Mask([secret.encode()])(text), (secret,)) == []  # a SecretBytes
    if not leaks(text, (secret,)):
        assert Mask([secret])(text) is text  # nothing to hide: the text as it was


def payment() -> dict[str, str]:
    return {"payer": "ada", "card": CARD, "phrase": PHRASE, "token": TOKEN}


def shown(url: str, saga_id: str) -> str:
    """What ``saga show`` prints, as text and as JSON, run as a real process."""
    return ok("--db", url, "show", saga_id) + ok("--db", url, "show", saga_id, "--json")


@pytest.mark.parametrize("kind", RAISES)
def test_a_step_error_holds_no_secret_whatever_its_text_comes_from(sql_url: str, kind: str) -> None:
    saga = Saga("pay", input_model=Payment)
    raised: list[str] = []

    @saga.step(retry=Retry.none())
    def charge(ctx: StepContext) -> None:
        error = RAISES[kind](ctx.input)
        raised.append(str(error))
        raise error

    with EventStore(sql_url, encryption_key=generate_key()) as store, \
            Coordinator(store, sagas=[saga]) as coordinator:
        view = coordinator.execute("pay", payment(), saga_id="p1")
        [failed] = [e.data for e in store.load("p1") if e.type == "StepAttemptFailed"]
    assert view.status is SagaStatus.COMPENSATED
    assert leaks(raised[0])  # the step's own error did quote a secret
    assert MASK[:8] in failed["message"], failed["message"]  # the limit may cut the stars too
    assert leaks(raw_log(sql_url)) == []
    assert TOKEN[:8] not in raw_log(sql_url)  # nor the start of one, cut short
    assert leaks(shown(sql_url, "p1")) == []


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_a_secret_in_an_http_call_is_masked_in_its_calls_and_spans(
        sql_url: str, otel: Otel) -> None:  # noqa: F811 (the fixture imported above)
    service = Service("bank").then(Reply(422, {"error": f"card {CARD} refused"}))
    down = Http("GET", f"http://127.0.0.1:{closed_port()}/cards/{{card}}")
    bank = Http("POST", service.url + "/cards/{card}/{phrase}", timeout=5)
    saga = Saga("pay", input_model=Payment)

    @saga.step(retry=Retry.none())
    def charge(ctx: StepContext) -> None:
        p: Payment = ctx.input
        with contextlib.suppress(ConnectionFailed):
            down(ctx, path={"card": p.token.get_secret_value()})
        bank(ctx, path={"card": p.card.get_secret_value(), "phrase": p.phrase.get_secret_value()})

    try:
        with EventStore(sql_url, encryption_key=generate_key()) as store, \
                Coordinator(store, sagas=[saga]) as coordinator:
            assert coordinator.execute("pay", payment(), saga_id="h1").status is SagaStatus.COMPENSATED
            [failed] = [e.data for e in store.load("h1") if e.type == "StepAttemptFailed"]
    finally:
        service.close()
    assert service.requests[0].path.startswith("/cards/4111")  # the service got the real values
    calls = failed["calls"]
    assert [c["outcome"] for c in calls] == ["error", "error"]
    for text in (failed["message"], *(c["target"] for c in calls), *(c["error"]["message"] for c in calls)):
        assert MASK in text and leaks(text) == [], text
    assert leaks(raw_log(sql_url)) == []
    assert leaks(shown(sql_url, "h1")) == []

    http = [s for s in otel.finished() if s.kind.name == "CLIENT"]
    assert len(http) == 2
    for span in http:
        attributes = span.attributes or {}
        assert MASK in str(attributes["url.full"])
        [event] = [e for e in span.events if e.name == "exception"]
        assert MASK in str((event.attributes or {})["exception.message"])
    [step] = otel.named("saga.step")
    exported = json.dumps([json.loads(s.to_json()) for s in otel.finished()])
    assert leaks(exported) == [], step.status.description
