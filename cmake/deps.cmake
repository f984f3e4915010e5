# cmake/deps.cmake — libraries used by individual layers, found with pkg-config and reported.
# Each layer that needs a library adds it here.

# cJSON (json: configs, tokenizer.json, safetensors headers, requests)
pkg_check_modules(CJSON REQUIRED IMPORTED_TARGET libcjson)
target_link_libraries(liandan PUBLIC PkgConfig::CJSON)
ld_report("cJSON ${CJSON_VERSION} (json)" CJSON_FOUND)

# PCRE2 (tokenizer: Unicode-aware pre-tokenization regexes, JIT)
pkg_check_modules(PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8)
target_link_libraries(liandan PUBLIC PkgConfig::PCRE2)
ld_report("PCRE2 ${PCRE2_VERSION} (tokenizer)" PCRE2_FOUND)
