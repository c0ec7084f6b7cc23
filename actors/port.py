"""The Port actor: the single writer of a port's token log.

Producers ask it to put tokens with a request on ``sf.put.<run>.<port>`` (core NATS
request/reply; a lost reply is retried and deduplicated by tag). A producer hosted in the
same process as the port actor calls the actor's put directly instead (one bus round trip
less on every step's critical path); the append, its checks and its fence are the same. It appends
``TokenEmitted`` under an expected-subject-sequence check, so a stale second owner cannot
interleave writes, and it appends ``PortTerminated`` once every producer step has
terminated (it follows their ``StepTerminated`` events).
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import msgspec

from actors._runtime import Actor, Interest, RunContext
from events.backoff import Backoff
from events.codec import enc_hook
from events.log import Record
from events.schema import PortTerminated, StepTerminated, TokenEmitted
from streamflow.errors import BusError, FencedError, StreamFlowError

__all__ = ["PortActor", "PutReply", "PutRequest", "put_token"]


class PutRequest(msgspec.Struct, frozen=True, kw_only=True):
    """A request to append a token to a port."""

    tag: str
    value: Any = None
    producer: str = ""
    job: str | None = None
    inputs: list[str] = []
    gen: int = 0


class PutReply(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to a :class:`PutRequest`."""

    ok: bool
    stream_seq: int = 0
    error: str = ""


_req_encoder = msgspec.msgpack.Encoder(enc_hook=enc_hook)
_req_decoder = msgspec.msgpack.Decoder(PutRequest)
_reply_decoder = msgspec.msgpack.Decoder(PutReply)


def put_subject(run_id: str, port_id: str) -> str:
    """The request subject of a port actor."""
    return f"sf.put.{run_id}.{port_id}"


async def put_token(ctx: RunContext, port_id: str, request: PutRequest, *, timeout: float = 5.0,
                    deadline: float = 120.0) -> int:
    """Put a token on a port through its actor, retrying until it is acknowledged.

    Returns:
        The stream sequence of the ``TokenEmitted`` event.

    Raises:
        BusError: no port actor answered within ``deadline`` seconds.
    """
    local = ctx.local_ports.get(port_id)
    if local is not None:
        # The port actor lives in this process: no request/reply, no task switch. (Only a
        # stopping host cancels a producer: an append cut short there is an unknown outcome
        # like any other, and the port's lock is released.)
        try:
            return await local(request)
        except FencedError:
            raise
        except StreamFlowError as exc:
            raise StreamFlowError(f"port {port_id} refused token {request.tag}: {exc}") from exc
    payload = _req_encoder.encode(request)
    backoff = Backoff(deadline=deadline)
    while True:
        try:
            msg = await ctx.nc.request(put_subject(ctx.run_id, port_id), payload, timeout=timeout)
            reply = _reply_decoder.decode(msg.data)
            if not reply.ok:
                raise StreamFlowError(f"port {port_id} refused token {request.tag}: {reply.error}")
            return reply.stream_seq
        except StreamFlowError:
            raise
        except Exception as exc:  # timeouts, no responders while the port actor (re)starts
            if backoff.expired:
                raise BusError(f"port {port_id} did not acknowledge token {request.tag}: {exc!r}") from exc
            await backoff.wait()


class PortActor(Actor):
    """Owns ``sf.ev.<run>.port.<id>``.

    Args:
        ctx: the run context.
        port_id: the port.
        producers: the ids of the steps that write on it.
    """

    SNAPSHOT: ClassVar[dict[str, Any]] = {
        "tokens": dict[tuple[str, int], int],
        "terminated_producers": dict[str, str],
        "terminated": bool,
        "last_seq": int,
    }

    def __init__(self, ctx: RunContext, port_id: str, producers: list[str]) -> None:
        super().__init__(ctx, f"port:{port_id}")
        self.port_id = port_id
        self.producers = set(producers)
        self.subject = f"sf.ev.{ctx.run_id}.port.{port_id}"
        self._producer_subjects = {f"sf.ev.{ctx.run_id}.step.{p}": p for p in producers}
        self.tokens: dict[tuple[str, int], int] = {}  # (tag, gen) -> stream seq
        self.terminated_producers: dict[str, str] = {}
        self.terminated = False
        self.last_seq = 0
        self._ready = asyncio.Event()
        self._lock = asyncio.Lock()
        self._sub: Any = None

    def interested(self, record: Record) -> bool:
        return record.subject == self.subject or record.subject in self._producer_subjects

    def interest(self) -> Interest | None:
        return Interest(subjects=frozenset({self.subject, *self._producer_subjects}))

    def apply(self, record: Record) -> None:
        body = record.body
        if record.subject == self.subject:
            self.last_seq = max(self.last_seq, record.stream_seq)
            if isinstance(body, TokenEmitted):
                self.tokens[(body.tag, body.gen)] = record.stream_seq
            elif isinstance(body, PortTerminated):
                self.terminated = True
        elif isinstance(body, StepTerminated):
            self.terminated_producers[self._producer_subjects[record.subject]] = body.status

    @property
    def done(self) -> bool:
        return self.terminated

    async def start(self) -> None:
        self._sub = await self.ctx.nc.subscribe(put_subject(self.ctx.run_id, self.port_id), cb=self._on_put)
        self.ctx.local_ports[self.port_id] = self.put_local

    async def stop(self) -> None:
        if self.ctx.local_ports.get(self.port_id) == self.put_local:
            del self.ctx.local_ports[self.port_id]
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None

    async def _on_put(self, msg: Any) -> None:
        await self._ready.wait()
        try:
            request = _req_decoder.decode(msg.data)
        except msgspec.DecodeError as exc:
            await msg.respond(msgspec.msgpack.encode(PutReply(ok=False, error=f"bad request: {exc}")))
            return
        try:
            seq = await self._put(request)
            reply = PutReply(ok=True, stream_seq=seq)
        except StreamFlowError as exc:
            reply = PutReply(ok=False, error=str(exc))
        await msg.respond(msgspec.msgpack.encode(reply))

    async def put_local(self, request: PutRequest) -> int:
        """Put a token for a producer of this process (what :meth:`_on_put` does for a request
        from the bus); returns the stream sequence of its ``TokenEmitted``.

        Raises:
            StreamFlowError: the port refused the token (it is terminated).
        """
        await self._ready.wait()
        return await self._put(request)

    async def _put(self, request: PutRequest) -> int:
        async with self._lock:
            known = self.tokens.get((request.tag, request.gen))
            if known is not None:
                return known
            if self.terminated:
                raise StreamFlowError(f"port {self.port_id} is terminated")
            body = TokenEmitted(tag=request.tag, value=request.value, producer=request.producer,
                                job=request.job, inputs=request.inputs, gen=request.gen)
            seq = await self.append("port", self.port_id, body, key=f"{request.tag}/{request.gen}",
                                    expected_last_seq=self.last_seq)
            self.tokens[(request.tag, request.gen)] = seq
            self.last_seq = max(self.last_seq, seq)
            return seq

    async def react(self) -> None:
        self._ready.set()
        if self.terminated or set(self.terminated_producers) != self.producers:
            return
        async with self._lock:
            if self.terminated:
                return
            statuses = set(self.terminated_producers.values())
            status = next((s for s in ("FAILED", "CANCELLED") if s in statuses), "COMPLETED")
            seq = await self.append("port", self.port_id, PortTerminated(status=status, tokens=len(self.tokens)),
                                    key="terminated", expected_last_seq=self.last_seq)
            self.last_seq = max(self.last_seq, seq)
            self.terminated = True
