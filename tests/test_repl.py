import io

import pytest

from chatbot.bot import Chatbot
from chatbot.errors import ConfigError
from chatbot.repl import ChatSession, run


@pytest.fixture(scope="module")
def bot(tiny_bundle) -> Chatbot:
    return Chatbot.load(tiny_bundle)


def test_history_grows_and_reset_clears_it(bot):
    session = ChatSession(bot, max_length=5)
    session.handle("Hello")
    assert session.history == ["Hello", bot.reply("Hello", max_length=5).text]
    session.handle("How are you?")
    assert len(session.history) == 2 * bot.config.data.history
    assert session.handle("/reset") == "(conversation cleared)"
    assert session.history == []


def test_commands_change_the_decoding(bot):
    session = ChatSession(bot, max_length=5)
    assert session.handle("/beam 3") == "(decoding: beam, beam 3, n-best 1)"
    assert session.handle("/nbest 2") == "(decoding: beam, beam 3, n-best 2)"
    answer = session.handle("Hello")
    assert answer.startswith("1. ") and "\n2. " in answer
    assert session.handle("/sample 0.7").startswith("(decoding: sample")
    assert session.decoding["temperature"] == 0.7
    assert session.handle("/greedy").startswith("(decoding: greedy")
    assert session.handle("/help").startswith("commands:")
    assert session.handle("/frobnicate") == "unknown command /frobnicate; /help lists them"
    assert session.handle("") == ""
    assert session.handle("/quit") is None


def test_bad_flags_fail_before_the_first_message(bot):
    with pytest.raises(ConfigError, match="temperature"):
        ChatSession(bot, temperature=0)


def test_a_piped_conversation_prints_one_reply_a_line_and_survives_errors(bot):
    out = io.StringIO()
    lines = ["Hello\n", "/beam 0\n", "/beam x\n", "Hi again\n", "/quit\n", "never read\n"]
    run(ChatSession(bot, max_length=5), lines, out)
    printed = out.getvalue().splitlines()
    assert len(printed) == 4  # a reply for every message, even an empty one
    assert printed[1].startswith("error: decoding: beam_width")
    assert printed[2].startswith("error: invalid literal")


def test_an_interactive_session_prompts(bot):
    out = io.StringIO()
    run(ChatSession(bot, max_length=5), ["Hello\n"], out, prompt="you> ")
    assert out.getvalue().startswith("you> ") and out.getvalue().endswith("you> ")
