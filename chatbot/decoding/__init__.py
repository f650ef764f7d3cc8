"""Reply generation: one compiled decoding loop, three ways of choosing the next token."""
