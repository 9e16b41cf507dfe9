"""An SMTP server on loopback that misbehaves on a schedule, for the delivery fault tests.

It is aiosmtpd, a real SMTP server: the faults are real SMTP answers (451, 421, 550, 554)
and real dropped connections, seen by the sender exactly as from a troubled MTA. Like
Postfix it offers PIPELINING, so the sender's pipelined path meets every fault. It keeps
how many times each recipient's message was received, which is what "never twice" means.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from aiosmtpd.controller import Controller


def advertise_pipelining(session, hostname: str, responses: list[str]) -> list[str]:
    """EHLO as Postfix answers it, with PIPELINING (RFC 2920), so that senders batch
    MAIL, RCPT and DATA; aiosmtpd reads pipelined commands one after another anyway."""
    session.host_name = hostname  # what aiosmtpd does itself when no EHLO hook is set
    return [*responses[:-1], "250-PIPELINING", responses[-1]]


@dataclass
class Faults:
    """What to do wrong. Recipients are lower-case addresses."""

    # 451 at RCPT the first time each of these is tried, then accept.
    greylist: set[str] = field(default_factory=set)
    # 421 to MAIL FROM (the server is going away) until this monotonic time.
    closed_until: float = 0.0
    # 550 at RCPT, every time.
    reject: set[str] = field(default_factory=set)
    # 554 after DATA (the content is refused), every time.
    reject_after_data: set[str] = field(default_factory=set)
    # Take the message, then drop the connection without answering.
    drop_after_data: set[str] = field(default_factory=set)


class FaultyServer:
    def __init__(self, faults: Faults | None = None):
        self.faults = faults or Faults()
        self.received: Counter[str] = Counter()
        self.refusals: Counter[str] = Counter()
        self._tried: set[str] = set()
        self._lock = threading.Lock()

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # noqa: N802
        return advertise_pipelining(session, hostname, responses)

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # noqa: N802
        if time.monotonic() < self.faults.closed_until:
            return "421 4.3.2 Service shutting down, try later"
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        address = address.lower()
        with self._lock:
            if address in self.faults.reject:
                self.refusals[address] += 1
                return "550 5.1.1 No such user"
            if address in self.faults.greylist and address not in self._tried:
                self._tried.add(address)
                self.refusals[address] += 1
                return "451 4.7.1 Greylisted, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        [address] = envelope.rcpt_tos
        if address in self.faults.reject_after_data:
            with self._lock:
                self.refusals[address] += 1
            return "554 5.6.0 Message content rejected"
        with self._lock:
            self.received[address] += 1
        if address in self.faults.drop_after_data:
            server.transport.close()  # the sender never hears the answer
            return "250 OK"
        return "250 2.0.0 OK queued"

    def count(self, address: str) -> int:
        with self._lock:
            return self.received[address]


class FaultySmtp:
    """Start and stop a FaultyServer on a port."""

    def __init__(self, port: int, faults: Faults | None = None):
        self.handler = FaultyServer(faults)
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=port)

    def __enter__(self) -> FaultyServer:
        self.controller.start()
        return self.handler

    def __exit__(self, *exc) -> None:
        self.controller.stop()
