"""Attention heatmaps: which context pieces the decoder looked at for each reply piece, the
quickest way to see whether a model reads the message or ignores it."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from chatbot.bot import Chatbot
from chatbot.errors import ConfigError
from chatbot.examples import Example


def plot_attention(bot: Chatbot, example: Example, path: str | Path, **decoding: Any) -> Path:
    """Reply to `example`'s context and save the attention weights as a heatmap image (the
    format follows `path`'s suffix): context pieces across, reply pieces and EOS down."""
    if bot.config.model.attention == "none":
        raise ConfigError("the model has no attention (model.attention is 'none') to plot")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    message, history = example.context[-1], example.context[:-1]
    reply = bot.reply_batch([message], [history], return_attention=True, **decoding)[0]
    weights = reply.attention
    sources = [bot.tokenizer.id_to_piece(i) for i in bot.context_ids(message, history)]
    rows = [*(bot.tokenizer.id_to_piece(i) for i in reply.candidates[0].ids), "</s>"]
    rows = rows[: weights.shape[0]]
    figure = Figure(figsize=(max(4.0, 0.35 * len(sources) + 2), max(3.0, 0.35 * len(rows) + 1.5)))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(weights, aspect="auto", cmap="viridis", vmin=0.0)
    axes.set_xticks(range(len(sources)), sources, rotation=90)
    axes.set_yticks(range(len(rows)), rows)
    axes.set_xlabel("context")
    axes.set_ylabel("reply")
    axes.set_title(textwrap.fill(f"reply: {reply.text}", 80), fontsize=10)
    figure.colorbar(image, ax=axes, label="attention weight")
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path
