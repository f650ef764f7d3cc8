"""Train a seq2seq chatbot on your own conversations, chat with it, and serve it over HTTP."""

__version__ = "0.1.0"
