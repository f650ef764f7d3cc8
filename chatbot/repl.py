"""`chatbot chat`: an interactive conversation in the terminal (or over a pipe).

Each line is a message; the reply comes back on its own line. Lines starting with "/" are
commands that change how replies are decoded or clear the conversation.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TextIO

from chatbot.bot import Chatbot
from chatbot.errors import ChatbotError

HELP = """commands:
  /reset        forget the conversation so far
  /greedy       the most likely reply
  /beam N       beam search over N hypotheses
  /sample [T]   sample replies (temperature T, default 1.0)
  /nbest N      show the N best candidates with their scores
  /help         this list
  /quit         leave (or end of input, or Ctrl-C)"""


EMPTY = "(empty reply)"


class ChatSession:
    """A conversation's history and decoding settings, advanced one input line at a time."""

    def __init__(self, bot: Chatbot, **decoding: Any) -> None:
        self.bot = bot
        self.decoding = {key: value for key, value in decoding.items() if value is not None}
        self.history: list[str] = []
        self.bot.settings(**self.decoding)  # fail now on bad flags, not at the first message

    def handle(self, line: str) -> str | None:
        """The text to show for one input line; None means the session is over."""
        line = line.strip()
        if not line:
            return ""
        if line.startswith("/"):
            return self._command(line)
        reply = self.bot.reply(line, self.history, **self.decoding)
        keep = 2 * self.bot.config.data.history
        self.history = [*self.history, line, reply.text][-keep:]
        if len(reply.candidates) == 1:
            return reply.text or EMPTY
        return "\n".join(
            f"{i}. {c.text or EMPTY}  ({c.score:.3f})"
            for i, c in enumerate(reply.candidates, start=1)
        )

    def _command(self, line: str) -> str | None:
        name, *args = line.split()
        changes: dict[str, Any] = {}
        if name in ("/quit", "/exit"):
            return None
        if name == "/help":
            return HELP
        if name == "/reset":
            self.history = []
            return "(conversation cleared)"
        if name == "/greedy":
            changes = {"strategy": "greedy"}
        elif name == "/beam":
            width = int(args[0]) if args else self.bot.settings(**self.decoding).beam_width
            changes = {"strategy": "beam", "beam_width": width}
        elif name == "/sample":
            changes = {"strategy": "sample", "temperature": float(args[0]) if args else 1.0}
        elif name == "/nbest":
            changes = {"n_best": int(args[0]) if args else 3}
        else:
            return f"unknown command {name}; /help lists them"
        settings = self.bot.settings(**{**self.decoding, **changes})
        self.decoding = {**self.decoding, **changes}
        return (
            f"(decoding: {settings.strategy}, beam {settings.beam_width}, n-best {settings.n_best})"
        )


def run(session: ChatSession, lines: Iterable[str], out: TextIO, prompt: str = "") -> None:
    """Feed `lines` to the session, writing each answer; stops at /quit or the end of input."""
    if prompt:
        out.write(f"{prompt}")
        out.flush()
    for line in lines:
        try:
            answer = session.handle(line)
        except (ChatbotError, ValueError) as error:
            answer = f"error: {error}"
        if answer is None:
            break
        if answer:
            out.write(f"{answer}\n")
        if prompt:
            out.write(prompt)
        out.flush()
