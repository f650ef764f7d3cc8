"""The encoder-decoder: recurrent cells, attention, and the Seq2Seq model that joins them."""
