"""Catching up with the event log fast: a pull consumer read without nats-py's per-message work.

Replaying a run (a resume, ``streamflow status``, a projection) reads every stored event of
a subject filter once, in order. Through a nats-py subscription each message pays for the
client's generic machinery: its headers parsed in pure Python (every event carries
``Nats-Msg-Id`` and ``Sf-Type``, which a reader never needs: the type is in the payload),
a ``Msg`` object, the reply subject parsed once for the ordered-consumer check and once more
for ``msg.metadata``, two asyncio queue hops. That was ~2/3 of the replay time.

:func:`catch_up` reads the same events through an ephemeral pull consumer (acks off,
memory storage, large batches requested ahead) whose messages are taken straight from the
client's protocol parser by a per-client hook: the stream sequence, delivery sequence,
timestamp and pending count come from the reply subject (``$JS.ACK...``), the headers are
not parsed at all (only the rare status messages' are looked at).

It yields until it has delivered an event after which nothing was pending (caught up, the
same test the ordered consumer's reader makes), and stops *early* on anything unexpected
(a gap in the delivery sequence, a status it does not know, no message for a while, a
client it cannot hook): the caller then goes on from the last sequence it got with the
ordinary ordered consumer, so nothing is skipped and nothing is read twice.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import json
from collections.abc import AsyncGenerator, Callable
from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.js import api

__all__ = ["BATCH", "RawEvent", "catch_up", "raw_sinks", "server_time"]

#: Messages asked for per pull request (another is sent when half of them have arrived).
BATCH = 4096
#: Seconds without any message while some are owed before giving up to the ordinary reader.
STALL = 10.0
#: A stored event as read: (stream sequence, subject, payload, server time in ns, pending after it).
RawEvent = tuple[int, bytes, bytes, int, int]
#: What a raw sink receives: (subject, reply, payload, raw headers or None).
Sink = Callable[[bytes, bytes, bytes, "bytes | None"], None]

_SINKS = "_sf_raw_sinks"


def server_time(reply: str | bytes) -> float:
    """The server's storage time (seconds since the epoch) in a JetStream reply subject
    (``$JS.ACK...``), 0.0 when it has none. Every reader of the log takes a record's time from
    here, so the same event has the same time (to the bit) whichever way it was read."""
    tokens = (reply.decode() if isinstance(reply, bytes) else reply).split(".")
    if len(tokens) < 9:
        return 0.0
    try:
        return int(tokens[7 if len(tokens) == 9 else 9]) / 1e9
    except ValueError:
        return 0.0


def raw_sinks(nc: NATS) -> dict[int, Sink] | None:
    """The per-client table of raw message sinks (subscription id -> sink), hooked on first use
    (and unhooked by :func:`_release` once the table is empty again).

    The hook replaces the client's message dispatch (``_process_msg``, called by its protocol
    parser for every message) by one that hands the messages of the listed subscriptions to
    their sink as raw bytes and every other message to the original dispatch, unchanged.
    None when the client does not look like the nats-py this was written for (the caller
    then reads the ordinary way).
    """
    sinks: dict[int, Sink] | None = getattr(nc, _SINKS, None)
    if sinks is not None:
        return sinks
    original = getattr(nc, "_process_msg", None)
    if original is None or not inspect.iscoroutinefunction(original):
        return None
    try:
        params = list(inspect.signature(original).parameters)
    except (TypeError, ValueError):
        return None
    if params[:5] != ["sid", "subject", "reply", "data", "headers"]:
        return None
    table: dict[int, Sink] = {}

    async def _process_msg(sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
        sink = table.get(sid)
        if sink is None:
            await original(sid, subject, reply, data, headers)
        else:
            sink(subject, reply, data, headers)

    setattr(nc, "_process_msg", _process_msg)  # noqa: B010 (an instance attribute on purpose)
    setattr(nc, _SINKS, table)
    return table


def _release(nc: NATS, sid: int) -> None:
    """Drop a sink; once none is left, the client's own dispatch is back (the hook is removed)."""
    table: dict[int, Sink] | None = getattr(nc, _SINKS, None)
    if table is None:
        return
    table.pop(sid, None)
    if not table:
        with contextlib.suppress(AttributeError):
            delattr(nc, "_process_msg")
            delattr(nc, _SINKS)


class _Pull:
    """The state of one catch-up: what arrived, what is owed, whether it went wrong."""

    def __init__(self) -> None:
        self.buffer: collections.deque[RawEvent] = collections.deque()
        self.owed = 0
        self.dseq = 1
        self.broken = ""
        self.waiter: asyncio.Future[None] | None = None

    def on_msg(self, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
        if self.broken:
            return  # whatever comes after a gap is the ordinary reader's
        if reply[:8] == b"$JS.ACK.":
            tokens = reply.split(b".")
            at = 5 if len(tokens) == 9 else 7  # v1: $JS.ACK.<stream>.<consumer>.<n>...; v2 adds domain, hash
            try:
                sseq, dseq, stamp, pending = int(tokens[at]), int(tokens[at + 1]), int(tokens[at + 2]), int(tokens[at + 3])
            except (ValueError, IndexError):
                self.broken = f"unexpected reply subject {reply[:120]!r}"
            else:
                if dseq != self.dseq:
                    self.broken = f"delivery {dseq} where {self.dseq} was expected"
                else:
                    self.dseq += 1
                    self.owed -= 1
                    self.buffer.append((sseq, subject, data, stamp, pending))
        else:
            self._status(headers or b"")
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _status(self, headers: bytes) -> None:
        code = headers[9:12]
        if code == b"100":
            return  # a heartbeat
        if code in (b"404", b"408"):  # the pull request ended (expired) with messages still owed
            for line in headers.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"nats-pending-messages":
                    with contextlib.suppress(ValueError):
                        self.owed -= int(value)
                    return
            self.owed = 0
            return
        self.broken = f"status {headers[9:80]!r}"


async def catch_up(nc: NATS, js: Any, stream: str, subject: str, start: int) -> AsyncGenerator[RawEvent, None]:
    """Yield the events of ``stream`` matching ``subject`` from sequence ``start`` on, until caught up.

    Stops after the first event with nothing pending after it, or earlier when anything is
    unexpected (see the module's docstring); yields nothing when the client cannot be hooked.
    At least one event must be stored at or after ``start`` (or this waits ``STALL`` seconds).
    """
    if raw_sinks(nc) is None:
        return
    state = _Pull()
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    name = ""
    try:
        # Looked up again after the await: another catch-up may have unhooked the client meanwhile.
        sinks = raw_sinks(nc)
        if sinks is None:
            return
        sinks[sub._id] = state.on_msg
        try:
            info = await js.add_consumer(stream, config=api.ConsumerConfig(
                ack_policy=api.AckPolicy.NONE, deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=max(1, start), filter_subject=subject, mem_storage=True, num_replicas=1,
                inactive_threshold=30.0))
        except (TimeoutError, nats.errors.Error, nats.js.errors.Error):
            return
        name = str(info.name)
        prefix = getattr(js, "_prefix", "$JS.API")
        next_subject = f"{prefix}.CONSUMER.MSG.NEXT.{stream}.{name}"
        request = json.dumps({"batch": BATCH, "expires": int(STALL * 1e9)}).encode()
        loop = asyncio.get_running_loop()
        buffer = state.buffer
        while True:
            if state.owed <= BATCH // 2 and len(buffer) < BATCH:
                state.owed += BATCH
                await nc.publish(next_subject, request, reply=inbox)
            while buffer:
                event = buffer.popleft()
                yield event
                if event[4] == 0:
                    return  # caught up
                if state.owed <= BATCH // 2 and len(buffer) < BATCH:
                    state.owed += BATCH
                    await nc.publish(next_subject, request, reply=inbox)
            if state.broken:
                return
            state.waiter = loop.create_future()
            try:
                await asyncio.wait_for(state.waiter, STALL)
            except TimeoutError:
                return
            finally:
                state.waiter = None
            if state.broken and not buffer:
                return
    finally:
        _release(nc, sub._id)
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
        if name and not nc.is_closed:
            with contextlib.suppress(Exception):  # not waited for: it goes anyway after inactive_threshold
                await nc.publish(f"{getattr(js, '_prefix', '$JS.API')}.CONSUMER.DELETE.{stream}.{name}", b"")
