"""Where each token's text ends in a reply's text, from one detokenization of the reply.

A reply's text is SentencePiece's detokenization with runs of whitespace squeezed to single
spaces and none at the ends. Streaming sends a reply token by token, so each token needs the
end of its text in that cleaned string. SentencePiece reports each piece's surface (the text it
contributes) when it decodes to a proto; the surfaces are walked once, so no growing prefix is
decoded again.

A token's offset is where the reply's text stands once the token is read: a token that does not
complete a character (a byte piece in the middle of one) or adds only whitespace that the
cleaned text drops adds nothing, a space between words goes with the token that reads it, and
the last token's offset is the text's end.
"""

from __future__ import annotations

from collections.abc import Sequence

import sentencepiece as spm

from chatbot.tokenizer import Tokenizer


class TextOffsets:
    """Per-token text offsets for a tokenizer's replies."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        # A processor of its own, since `Tokenizer` exposes text only, not the pieces' surfaces.
        self._processor = spm.SentencePieceProcessor(model_proto=tokenizer.model_proto)

    def __call__(self, ids: Sequence[int], text: str) -> tuple[int, ...]:
        """For each of `ids`, the end of its text in `text`, the cleaned text of all of them."""
        if not ids:
            return ()
        decoded = self._processor.decode([int(i) for i in ids], return_type="proto")
        offsets, length, gap = [], 0, False  # the cleaned text so far, and a space pending
        for piece in decoded.pieces[:-1]:
            for char in piece.surface:
                if not char.isspace():
                    length += gap + 1
                    gap = False
                elif length:
                    gap = True
            # a pending space is sent with the token when a word follows it in the text
            offsets.append(length + 1 if gap and length < len(text) else length)
        return (*offsets, len(text))

    def piece_text(self, token_id: int) -> str:
        """One token's text on its own: its piece with the word-start mark as a space, a
        byte piece as its character (or `\\xNN` when the byte is part of one), and a special
        piece as written (`</s>`)."""
        processor = self._processor
        piece = processor.id_to_piece(token_id)
        if processor.is_byte(token_id):
            return bytes([int(piece[3:5], 16)]).decode("utf-8", "backslashreplace")
        if processor.is_control(token_id) or processor.is_unknown(token_id):
            return piece
        return piece.replace("\u2581", " ")
