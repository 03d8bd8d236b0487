"""Textual's Linux driver, with an input thread that sleeps while no key is pressed.

Textual's input thread wakes ten times a second to time out half-received escape sequences (a
lone Esc), with or without input. Here that cost about 0.09 % of a core, a tenth of neuron-top's
budget at a 1 s refresh. This thread sleeps until a key arrives, until a started escape sequence
is due to time out, or until input is turned off (a byte on a private pipe wakes it then).
"""

from __future__ import annotations

import os
import selectors
from codecs import getincrementaldecoder

from textual._parser import ParseError
from textual._time import get_time
from textual._xterm_parser import XTermParser
from textual.drivers.linux_driver import LinuxDriver

_POLL_S = 0.1  # Textual's own period: used whenever the parser's state cannot be read


class QuietLinuxDriver(LinuxDriver):
    _wake_w: int | None = None

    def run_input_thread(self) -> None:
        wake_r, self._wake_w = os.pipe()
        selector = selectors.SelectSelector()
        selector.register(self.fileno, selectors.EVENT_READ)
        selector.register(wake_r, selectors.EVENT_READ)
        parser = XTermParser(self._debug)
        decode = getincrementaldecoder("utf-8")().decode
        try:
            while not self.exit_event.is_set():
                # (a Textual without this attribute gets the 0.1 s period, never a zero timeout)
                due = getattr(parser, "_timeout_time", get_time() + _POLL_S)
                timeout = None if due is None else max(0.0, min(_POLL_S, due - get_time()))
                for key, _mask in selector.select(timeout):
                    if key.fd == wake_r:
                        self.exit_event.wait()  # disable_input() sets it right after waking us
                        break
                    data = decode(os.read(self.fileno, 4096))
                    if not data:  # end of input: stop watching it (it would read as ready forever)
                        selector.unregister(self.fileno)
                        continue
                    for event in parser.feed(data):
                        self.process_message(event)
                for event in parser.tick():
                    self.process_message(event)
        finally:
            selector.close()
            for fd in (wake_r, self._wake_w):
                os.close(fd)
            self._wake_w = None
            try:
                for _event in parser.feed(""):
                    pass
            except (EOFError, ParseError):
                pass

    def disable_input(self) -> None:
        if self._wake_w is not None and not self.exit_event.is_set():
            try:
                os.write(self._wake_w, b"x")
            except OSError:
                pass
        super().disable_input()
