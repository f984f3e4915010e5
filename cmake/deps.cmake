# cmake/deps.cmake — libraries used by individual layers (tokenizer: PCRE2; io: cJSON; ...).
# Each layer that needs a library adds it here with pkg-config and reports it.
