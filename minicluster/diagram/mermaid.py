"""A Sequence as Mermaid `sequenceDiagram` text.

Asks are a request (``->>``) and a dashed reply (``-->>``, its outcome written when it is not
ok); tells are open arrows (``-)``). A message that was dropped or refused by fencing is a
crossed arrow (``-x``); failures sit in a tinted ``rect`` with a note giving the reason. A run of
heartbeats is one note with its count and time span. Whenever cluster time moves on, a note
across the diagram says the time.
"""

from __future__ import annotations

from .participants import Participant
from .records import TraceRecord
from .sequence import HeartbeatRun, Message, Sequence

FAILURE_TINT = "rgb(255, 228, 225)"
FENCING_TINT = "rgb(255, 240, 205)"
MAX_LABEL_LENGTH = 120

_ENTITIES = {
    "#": "#35;",  # first: the escapes below start with it
    ";": "#59;",  # ends a statement
    "<": "#lt;",
    ">": "#gt;",
    "&": "#amp;",
    "%": "#37;",  # %% starts a comment or a directive
    '"': "#quot;",
    "{": "#123;",
    "}": "#125;",
}


def escape(text: str) -> str:
    """Text Mermaid takes literally in a message, note or participant label: one line, no
    statement end, no markup, Mermaid's ``#code;`` entities for what it would read otherwise."""
    text = " ".join(text.split())
    if len(text) > MAX_LABEL_LENGTH:
        text = text[: MAX_LABEL_LENGTH - 3] + "..."
    return "".join(_ENTITIES.get(c, c) for c in text)


def seconds(value: float) -> str:
    """10.0 s, 0.05 s, 3.125 s: at least one decimal, at most three."""
    text = f"{value:.3f}".rstrip("0")
    return f"{text}0 s" if text.endswith(".") else f"{text} s"


def _span(aliases: list[str]) -> str:
    return aliases[0] if len(aliases) == 1 else f"{aliases[0]},{aliases[-1]}"


def render_mermaid(sequence: Sequence, title: str | None = None) -> str:
    """The diagram's text; every line Mermaid's sequenceDiagram grammar accepts."""
    alias = {p.endpoint: p.alias for p in sequence.participants}
    order = {p.endpoint: i for i, p in enumerate(sequence.participants)}
    everyone = [p.alias for p in sequence.participants]
    lines = ["sequenceDiagram"]
    if title:
        lines.append(f"    title {escape(title)}")
    lines += [_participant(p) for p in sequence.participants]
    last_time: float | None = None
    for item in sequence.items:
        if isinstance(item, HeartbeatRun):
            ends = sorted(item.endpoints, key=order.__getitem__)
            span = (
                f"at {seconds(item.first)}"
                if item.first == item.last
                else f"{seconds(item.first)} - {seconds(item.last)}"
            )
            text = f"heartbeats x {item.count}, {span}"
            note = f"    Note over {_span([alias[e] for e in ends])}: "
            if item.failed:
                lines += [
                    f"    rect {FAILURE_TINT}",
                    note + escape(f"{text}, {item.failed} dropped or failed"),
                    "    end",
                ]
            else:
                lines.append(note + escape(text))
            last_time = item.last
            continue
        record = item.record
        if record.time != last_time:
            lines.append(f"    Note over {_span(everyone)}: {seconds(record.time)}")
            last_time = record.time
        lines += _message(item, alias[item.sender], alias[item.receiver])
    if sequence.left_out:
        lines.append(
            f"    Note over {_span(everyone)}: "
            + escape(
                f"{sequence.left_out:,} more message(s) left out (at most "
                f"{sequence.max_messages:,} drawn: narrow the time window or the components)"
            )
        )
    if not sequence.participants:
        lines.append("    Note over Nobody: no message in the selection")
    return "\n".join(lines) + "\n"


def _participant(p: Participant) -> str:
    word = "actor" if p.role == "client" else "participant"
    return f"    {word} {p.alias} as {escape(p.label)}"


def message_label(record: TraceRecord) -> str:
    """The method, with what its ids say in a few words: ``submit_task map[2] #1``,
    ``update_task_execution_state RUNNING``, ``request_slot te-1/0``, ``submit_job etl``."""
    detail = record.detail
    extra = ""
    if record.method == "submit_task" and "vertex" in detail:
        attempt = detail.get("attempt") or 0
        extra = f"{detail['vertex']}[{detail.get('subtask', 0)}]" + (
            f" #{attempt}" if attempt else ""
        )
    elif "state" in detail:
        extra = str(detail["state"])
    elif "job_name" in detail:
        extra = str(detail["job_name"])
    elif "slot" in detail:
        extra = str(detail["slot"])
    return f"{record.method} {extra}" if extra else record.method


def _message(item: Message, sender: str, receiver: str) -> list[str]:
    record = item.record
    method = escape(message_label(record))
    outcome = escape(record.outcome)
    if record.ok:
        if record.kind == "tell":
            return [f"    {sender}-){receiver}: {method}"]
        return [f"    {sender}->>{receiver}: {method}", f"    {receiver}-->>{sender}:"]
    if record.fencing_rejected:
        return [
            f"    rect {FENCING_TINT}",
            f"    {sender}-x{receiver}: {method}",
            f"    Note right of {receiver}: {outcome}",
            "    end",
        ]
    if record.dropped:
        return [
            f"    rect {FAILURE_TINT}",
            f"    {sender}-x{receiver}: {method} (dropped)",
            "    end",
        ]
    if record.kind == "tell":
        return [
            f"    rect {FAILURE_TINT}",
            f"    {sender}-x{receiver}: {method}",
            f"    Note right of {receiver}: {outcome}",
            "    end",
        ]
    return [
        f"    rect {FAILURE_TINT}",
        f"    {sender}->>{receiver}: {method}",
        f"    {receiver}--x{sender}: {outcome}",
        "    end",
    ]
