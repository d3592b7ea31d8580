"""The results page shows what the model gateway metered: per case and per run on the task
class page, and each case's transcript on its page, read through the store and verified by
its digest (a missing or edited transcript is flagged, never shown as recorded).

The state directory is written through the real store: each transcript by
``store_transcript``, the run report by ``write_run_record``. One transcript is OpenAI Chat
Completions with a tool call (JSON), one Anthropic Messages streamed (Server-Sent Events),
one carries a hostile agent's markup in its messages and an unreadable reply.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pytest_codegenie_eval.evidence.aggregate import build_report
from pytest_codegenie_eval.models import CaseResult, ModelUsage
from pytest_codegenie_eval.output import html as htmlreport
from pytest_codegenie_eval.output.html import transcripts
from pytest_codegenie_eval.store.audit import write_run_record
from pytest_codegenie_eval.store.statedir import StateDir, store_transcript

TC = "gw"
PAYLOAD = "<script>document.body.setAttribute('data-pwned', 'yes')</script>"
IMG_PAYLOAD = "<img src=x onerror=\"document.body.setAttribute('data-pwned', 'img')\">"


def _line(
    request: Any,
    response: Any,
    *,
    upstream: str = "openai",
    path: str = "v1/chat/completions",
    status: int = 200,
    model: str = "gpt-4o-mini",
    tokens: tuple[int, int, int] = (0, 0, 0),
    latency_s: float = 0.1,
    cost_usd: float | None = 0.0,
) -> str:
    """One transcript line, as the gateway writes it (execution/gateway/access.py)."""
    return json.dumps(
        {
            "upstream": upstream,
            "method": "POST",
            "path": path,
            "status": status,
            "model": model,
            "input_tokens": tokens[0],
            "output_tokens": tokens[1],
            "cached_input_tokens": tokens[2],
            "latency_s": latency_s,
            "cost_usd": cost_usd,
            "replayed": False,
            "request": request if isinstance(request, str) else json.dumps(request),
            "response": response if isinstance(response, str) else json.dumps(response),
        },
        sort_keys=True,
        ensure_ascii=False,
    )


def _sse(events: list[tuple[str | None, Any]]) -> str:
    return "".join(
        (f"event: {name}\n" if name else "")
        + f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"
        for name, data in events
    )


# OpenAI Chat Completions: a tool call, then the answer after the tool's result
_TOOL_CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "read_file", "arguments": '{"path": "package.json"}'},
}
_FIRST = [
    {"role": "system", "content": "You fix vulnerable dependencies."},
    {"role": "user", "content": "Bump lodash past 4.17.20."},
]
OPENAI_JSON = "\n".join(
    [
        _line(
            {"model": "gpt-4o-mini", "messages": _FIRST},
            {
                "choices": [
                    {"message": {"role": "assistant", "content": None, "tool_calls": [_TOOL_CALL]}}
                ]
            },
            tokens=(12_000, 345, 0),
            latency_s=0.25,
            cost_usd=0.0021,
        ),
        _line(
            {
                "model": "gpt-4o-mini",
                "messages": [
                    *_FIRST,
                    {"role": "assistant", "content": None, "tool_calls": [_TOOL_CALL]},
                    {"role": "tool", "tool_call_id": "call_1", "content": '{"lodash": "4.17.20"}'},
                ],
            },
            {
                "choices": [
                    {"message": {"role": "assistant", "content": "Bumped lodash to 4.17.21."}}
                ]
            },
            tokens=(12_400, 56, 0),
            latency_s=1.5,
            cost_usd=0.0019,
        ),
    ]
)

# Anthropic Messages, streamed
ANTHROPIC_SSE = _line(
    {
        "model": "claude-sonnet-4-5",
        "system": [{"type": "text", "text": "You are terse."}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Say hello."}]}],
        "stream": True,
    },
    _sse(
        [
            ("message_start", {"type": "message_start", "message": {"model": "claude-sonnet-4-5"}}),
            (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            ),
            *(
                (
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "text_delta", "text": piece},
                    },
                )
                for piece in ("Hello", ", streamed ", "world.")
            ),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"}}),
            ("message_stop", {"type": "message_stop"}),
        ]
    ),
    upstream="anthropic",
    path="v1/messages",
    model="claude-sonnet-4-5",
    tokens=(1_000, 20, 2_048),
    latency_s=0.8,
    cost_usd=0.0042,
)

# a hostile agent: markup in its messages, a reply that is no JSON and no stream
HOSTILE = _line(
    {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": PAYLOAD + IMG_PAYLOAD}]},
    "not json " + PAYLOAD,
    status=502,
    latency_s=0.05,
    cost_usd=None,
)


def _usage(transcript_digest: str, **kwargs: Any) -> ModelUsage:
    return ModelUsage(transcript_digest=transcript_digest, **kwargs)


def _case(case_id: str, usage: ModelUsage | None, cost: float, **kwargs: Any) -> CaseResult:
    return CaseResult(
        task_class=TC,
        case_id=case_id,
        score=1.0,
        passed=True,
        cost_usd=cost,
        case_digest=f"{len(case_id):064x}",
        sut="agent",
        model_usage=usage,
        **kwargs,
    )


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state directory with one run of four cases: three metered (one transcript each)
    and one that reported its own cost."""
    root = tmp_path_factory.mktemp("gateway-page") / "state"
    kept = StateDir(root).transcripts
    openai = store_transcript(kept, (OPENAI_JSON + "\n").encode())
    anthropic = store_transcript(kept, (ANTHROPIC_SSE + "\n").encode())
    hostile = store_transcript(kept, (HOSTILE + "\n").encode())
    cases = [
        _case(
            "alpha",
            _usage(
                openai,
                calls=2,
                input_tokens=24_400,
                output_tokens=401,
                cost_usd=0.004,
                latency_p50_s=0.25,
                latency_p95_s=1.5,
            ),
            0.004,
            cost_source="gateway",
            sut_reported_cost_usd=0.5,
        ),
        _case(
            "beta",
            _usage(
                anthropic,
                calls=1,
                input_tokens=1_000,
                output_tokens=20,
                cached_input_tokens=2_048,
                cost_usd=0.0042,
                latency_p50_s=0.8,
                latency_p95_s=0.8,
            ),
            0.0,  # a cached result: spent when it was measured, not by this run
            cost_source="gateway",
            cached=True,
        ),
        _case(
            "gamma",
            _usage(
                hostile,
                calls=1,
                upstream_errors=1,
                unpriced_calls=1,
                latency_p50_s=0.05,
                latency_p95_s=0.05,
            ),
            0.0,
            cost_source="gateway",
        ),
        _case("delta", None, 0.25, cost_source="sut-reported", sut_reported_cost_usd=0.25),
    ]
    report = build_report(
        TC, cases, harness_version="test", created_at=datetime(2026, 1, 2, tzinfo=UTC)
    )
    write_run_record(report, root)
    return root


@pytest.fixture(scope="module")
def site(state: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gateway-site")
    summary = htmlreport.build_site(state, out)
    assert summary.attempts == 4
    return out


@pytest.fixture(scope="module")
def attempt(site: Path, browser: Any) -> Iterator[Callable[[str], str]]:
    """An attempt page of the run, as the browser draws it (script, fragments and all)."""
    context = browser.new_context()
    page = context.new_page()
    seen: dict[str, str] = {}

    def render(case_id: str) -> str:
        if case_id not in seen:
            url = (site / "tc" / TC / "attempt.html").resolve().as_uri()
            page.goto(f"{url}#case={case_id}")
            page.wait_for_selector("#app[data-ready=yes][data-pending='0']", state="attached")
            seen[case_id] = page.content()
        return seen[case_id]

    yield render
    context.close()


def _page(site: Path, name: str) -> str:
    return (site / "tc" / TC / name).read_text(encoding="utf-8")


def _fragment(path: Path) -> str:
    """What a diff or transcript fragment file holds, as text."""
    text = path.read_text(encoding="utf-8")
    return json.dumps(json.loads(text[text.index("{") : text.rindex(")")]), ensure_ascii=False)


def _text(html: str) -> str:
    """The page's text, tags dropped and entities unescaped (enough to read numbers)."""
    import html as entities

    return re.sub(r"\s+", " ", entities.unescape(re.sub(r"<[^>]+>", " ", html)))


def test_the_task_class_page_shows_what_the_gateway_metered(site: Path) -> None:
    page = _page(site, "index.html")
    totals = _text(page[page.index('id="gateway-totals"') : page.index('id="cases"')])
    assert "attempts metered 3 of 4" in totals
    assert "model calls 4 " in totals
    assert "25,400 in (+ 2,048 cached) / 421 out" in totals
    assert (
        "metered cost 0.0082 USD (the SUTs reported 0.5000 USD); 0.0042 USD of it by 1 " in totals
    )
    assert "cached attempt, metered when measured" in totals
    assert "1 call of models the price table does not price" in totals
    assert "metered by the gateway: 3 attempts; reported by the SUT: 1 attempt" in totals
    # over the four calls of the three transcripts: 0.05, 0.25, 0.8, 1.5 (nearest rank)
    assert "p50 250 ms, p95 1.50 s (over 4 calls, from the transcripts)" in totals
    assert "upstream errors 1 " in totals
    rows = {
        m.group(1): _text(m.group(0))
        for m in re.finditer(
            r'<tr class="case[^"]*">\s*<td class="c-case"><a[^>]*>(\w+)</a>.*?</tr>', page, re.S
        )
    }
    assert set(rows) == {"alpha", "beta", "gamma", "delta"}
    assert "2 24,400 401 0.0040 USD 1.50 s" in rows["alpha"]
    assert "1 1,000 20 0.0042 USD 800 ms" in rows["beta"]
    assert "not metered" in rows["delta"]
    assert 'data-sort-value="24400"' in page  # sorts as a number, shown with separators
    runs = _text(page[page.index('id="runs"') : page.index("</table>", page.index('id="runs"'))])
    assert "0.2540 4 25,400 / 421 0.0082 USD" in runs  # the run's cost, then the metered
    overview = _text((site / "index.html").read_text(encoding="utf-8"))
    assert "model gateway 4 calls, 25,400 / 421 tokens in / out, 0.0082 USD metered" in overview


def test_a_case_page_shows_the_transcript_call_by_call(
    site: Path, attempt: Callable[[str], str]
) -> None:
    alpha = attempt("alpha")
    text = _text(alpha)
    assert "metered by the model gateway; the SUT reported 0.5000 USD" in text
    assert "24,400 in (+ 0 cached) / 401 out" in text
    assert "p50 250 ms, p95 1.50 s" in text
    assert alpha.count('class="call"') == 2
    call_1 = _text(alpha[alpha.index('id="call-1"') : alpha.index('id="call-2"')])
    assert "POST openai/v1/chat/completions" in call_1
    assert "model gpt-4o-mini · 12,000 in / 345 out · 250 ms · 0.0021 USD" in call_1
    assert "You fix vulnerable dependencies." in call_1
    assert "Bump lodash past 4.17.20." in call_1
    assert 'tool call read_file {"path": "package.json"}' in call_1  # the reply's tool call
    call_2 = _text(alpha[alpha.index('id="call-2"') :])
    # the conversation so far is not repeated; the tool's result is labelled with its tool
    assert "the first 2 messages: as in the previous call's request" in call_2
    assert "You fix vulnerable dependencies." not in call_2
    assert 'tool result read_file {"lodash": "4.17.20"}' in call_2
    assert "Bumped lodash to 4.17.21." in call_2
    assert "1.50 s" in call_2
    raw = site / "transcripts" / f"{_digest_of(alpha)}.jsonl"
    assert raw.read_text() == OPENAI_JSON + "\n"

    beta = _text(attempt("beta"))
    assert "POST anthropic/v1/messages" in beta
    assert "1,000 in (+ 2,048 cached) / 20 out · 800 ms · 0.0042 USD" in beta
    assert "system You are terse." in beta
    assert "Say hello." in beta
    assert "streamed: reassembled from 8 events" in beta
    assert "Hello, streamed world." in beta
    assert "metered cost 0.0042 USD (when the cached result was measured)" in beta

    delta = _text(attempt("delta"))
    assert "as the SUT reported it" in delta
    assert "the model gateway did not meter this attempt" in delta


def _digest_of(page: str) -> str:
    found = re.search(r"transcripts/([0-9a-f]{64})\.jsonl", page)
    assert found is not None
    return found.group(1)


def test_hostile_transcript_text_is_escaped(site: Path, attempt: Callable[[str], str]) -> None:
    gamma = attempt("gamma")
    assert PAYLOAD not in gamma
    assert IMG_PAYLOAD not in gamma
    assert "&lt;script&gt;document.body.setAttribute(" in gamma
    assert "&lt;img src=x onerror=" in gamma
    # the only scripts are the site's own files: the page's, its data and the fragment
    sources = re.findall(r"<script[^>]*>", gamma)
    assert '<script src="../../static/site.js">' in sources
    assert all(re.fullmatch(r'<script src="[^":]+\.js">', tag) for tag in sources), sources
    assert "<img" not in gamma
    text = _text(gamma)
    assert "neither JSON nor a stream this page reads: shown as received" in text
    assert "not json " + PAYLOAD in text
    assert "502" in text
    assert "cost not priced" in text


def test_a_missing_or_edited_transcript_is_flagged_never_shown(state: Path, tmp_path: Path) -> None:
    copy = tmp_path / "state"
    shutil.copytree(state, copy)
    kept = sorted((copy / "transcripts").rglob("*.jsonl"))
    edited = next(p for p in kept if "Bump lodash" in p.read_text())
    edited.write_text(edited.read_text().replace("Bump lodash", "EDITED lodash"))
    streamed = next(p for p in kept if "anthropic" in p.read_text())
    streamed.unlink()
    # the attack is live: the edited bytes sit where the page reads the recorded ones from
    from pytest_codegenie_eval.store.statedir import read_transcript

    assert "EDITED lodash" in edited.read_text()
    assert read_transcript(copy / "transcripts", edited.stem) is None
    out = htmlreport.build_site(copy, tmp_path / "site").index.parent
    alpha = _fragment(out / "transcripts" / f"{edited.stem}.js")
    assert "EDITED" not in alpha
    assert "Bump lodash" not in alpha
    assert 'class="call"' not in alpha
    assert f"transcript {edited.stem[:16]}… is missing from the state directory or no " in alpha
    assert "longer matches its recorded digest" in alpha
    assert not (out / "transcripts" / edited.name).exists()  # no raw copy either
    beta = _fragment(out / "transcripts" / f"{streamed.stem}.js")
    assert "Hello, streamed" not in beta
    assert "no longer matches its recorded digest" in beta
    # the metered numbers are the report's (the chain verifies them) and still shown; the
    # run's latency is then over the attempts, and says so
    (data,) = (out / "tc" / TC / "data").glob("run-*.js")
    assert '"input_tokens":24400' in data.read_text().replace(" ", "")
    totals = _text(_page(out, "index.html"))
    assert "p50 250 ms, p95 1.50 s (over 3 attempts: the median of their p50s" in totals


def test_transcripts_parse_the_other_shapes_and_cut_what_is_long() -> None:
    """OpenAI streamed tool calls, Anthropic tool use and results, the Responses API, an
    error body, a line that is not JSON, and a message longer than a page shows."""
    openai_stream = _sse(
        [
            (None, {"choices": [{"delta": {"role": "assistant", "content": "Let me look. "}}]}),
            (
                None,
                {
                    "choices": [
                        {
                            "delta": {
                                "tool_calls": [
                                    {"index": 0, "function": {"name": "grep", "arguments": '{"q"'}}
                                ]
                            }
                        }
                    ]
                },
            ),
            (
                None,
                {
                    "choices": [
                        {
                            "delta": {
                                "tool_calls": [{"index": 0, "function": {"arguments": ': "x"}'}}]
                            }
                        }
                    ]
                },
            ),
            (None, "[DONE]"),
        ]
    )
    anthropic_tools = {
        "messages": [
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "tu1", "name": "ls", "input": {"dir": "."}}],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "tu1", "content": "a.txt"}],
            },
        ]
    }
    anthropic_reply = {
        "type": "message",
        "content": [
            {"type": "text", "text": "Listing."},
            {"type": "tool_use", "id": "tu2", "name": "cat", "input": {"file": "a.txt"}},
        ],
    }
    responses = {"instructions": "be brief", "input": "hi"}
    responses_reply = {
        "output": [{"type": "message", "content": [{"type": "output_text", "text": "yo"}]}]
    }
    long_text = "x" * (transcripts.MAX_TEXT + 10)
    lines = [
        _line({"messages": [{"role": "user", "content": "q"}]}, openai_stream),
        _line(anthropic_tools, anthropic_reply),
        _line(responses, responses_reply, path="v1/responses"),
        _line(
            {"messages": [{"role": "user", "content": long_text}]},
            {"error": {"message": "rate limited"}},
            status=429,
        ),
        "{not a json line",
    ]
    parsed = transcripts.parse_transcript("\n".join(lines).encode())
    calls = parsed.calls
    assert len(calls) == 5

    (reply,) = calls[0].response.messages
    assert [(p.kind, p.label, p.text) for p in reply.parts] == [
        ("text", "", "Let me look. "),
        ("tool call", "grep", '{"q": "x"}'),
    ]
    assert calls[0].response.note == "streamed: reassembled from 4 events"

    use, result = calls[1].request.messages
    assert (use.parts[0].kind, use.parts[0].label, use.parts[0].text) == (
        "tool call",
        "ls",
        '{"dir": "."}',
    )
    assert (result.parts[0].kind, result.parts[0].label, result.parts[0].text) == (
        "tool result",
        "ls",
        "a.txt",
    )
    assert [(p.kind, p.label) for p in calls[1].response.messages[0].parts] == [
        ("text", ""),
        ("tool call", "cat"),
    ]

    assert calls[2].request.system[0].text == "be brief"
    assert calls[2].request.messages[0].parts[0].text == "hi"
    assert calls[2].response.messages[0].parts[0].text == "yo"

    (cut,) = calls[3].request.messages[0].parts
    assert len(cut.text) == transcripts.MAX_TEXT
    assert cut.note == f"the first {transcripts.MAX_TEXT:,} of {len(long_text):,} characters"
    assert calls[3].response.messages[0].parts[0].text == "rate limited"
    assert not calls[3].ok

    assert calls[4].problem == "this line of the transcript is not a JSON object"
    assert calls[4].request.raw == "{not a json line"


def test_a_long_transcript_shows_its_first_part_and_says_so() -> None:
    big = "y" * (transcripts.MAX_TEXT - 8)
    count = transcripts.MAX_TRANSCRIPT_TEXT // len(big) + 3
    lines = [
        _line({"messages": [{"role": "user", "content": f"{i:06d} {big}"}]}, {"choices": []})
        for i in range(count)
    ]
    parsed = transcripts.parse_transcript("\n".join(lines).encode())
    shown = [c for c in parsed.calls if c.request.messages or c.request.earlier]
    assert 0 < len(shown) < count
    assert sum(c.request.chars + c.response.chars for c in parsed.calls) <= (
        transcripts.MAX_TRANSCRIPT_TEXT
    )
    assert parsed.note.startswith(f"the messages of {count - len(shown)} call(s) are not shown")
    assert parsed.calls[-1].request.note == "not shown: the page holds no more of this transcript"
    assert len(parsed.calls) == count  # every call is still listed, with its numbers


# --------------------------------------------------------------------------------------------
# in a real browser


def test_the_transcript_pages_render_without_errors_in_chromium(site: Path, browser: Any) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    console: list[str] = []
    requests: list[str] = []
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda error: console.append(f"pageerror: {error}"))
    context.on("request", lambda request: requests.append(request.url))
    try:
        for name in ("alpha", "beta", "gamma"):
            url = (site / "tc" / TC / "attempt.html").resolve().as_uri()
            page.goto(f"{url}#case={name}")
            page.wait_for_selector("#app[data-ready=yes][data-pending='0']", state="attached")
            assert page.locator("body").get_attribute("data-pwned") is None
            assert page.locator("#transcript details.call").count() >= 1
            assert page.locator("#transcript script, #transcript img").count() == 0
        assert PAYLOAD in page.locator("#transcript").inner_text()
        # the raw transcript the page links to is text too, not a page the agent wrote
        raw = page.locator("#model-usage a", has_text="raw transcript").get_attribute("href")
        assert raw is not None
        page.goto((site / "tc" / TC / raw).resolve().as_uri())
        assert PAYLOAD in page.locator("body").inner_text()
        assert page.evaluate("document.body.getAttribute('data-pwned')") is None
        assert page.locator("script, img").count() == 0
        # the case table sorts formatted numbers as numbers: as text, "800 ms" > "50 ms" >
        # "1.50 s"
        index = (site / "tc" / TC / "index.html").resolve().as_uri()
        page.goto(index + "#sort=c-p95:desc")
        assert page.locator("#cases").get_attribute("data-list-ready") == "4"
        order = page.locator("#cases tbody .c-case").all_inner_texts()
        assert order == ["alpha", "beta", "gamma", "delta"]  # 1.50 s, 800 ms, 50 ms, none
        page.goto(index + "#sort=c-case:desc")
        page.reload()  # a new fragment alone does not load the page again
        order = page.locator("#cases tbody .c-case").all_inner_texts()
        assert order == ["gamma", "delta", "beta", "alpha"]  # text columns sort as before
        assert console == []  # no script error, no Content-Security-Policy violation
        assert all(url.startswith("file://") for url in requests), requests
    finally:
        context.close()
    phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    try:
        page = phone.new_page()
        for name in ("index.html", "attempt.html#case=alpha", "attempt.html#case=gamma"):
            page.goto((site / "tc" / TC).resolve().as_uri() + "/" + name)
            if "#" in name:
                page.wait_for_selector("#app[data-ready=yes][data-pending='0']", state="attached")
            width = page.evaluate("[document.documentElement.scrollWidth, 390]")
            assert width[0] <= width[1], (name, width)  # wide tables scroll in their box
    finally:
        phone.close()
