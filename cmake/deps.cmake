# cmake/deps.cmake — libraries used by individual layers (tokenizer: PCRE2; io: cJSON; ...).
# Each layer that needs a library adds it here with pkg-config and reports it.

# cJSON (json)
pkg_check_modules(CJSON REQUIRED IMPORTED_TARGET libcjson)
target_link_libraries(liandan PUBLIC PkgConfig::CJSON)
ld_report("cJSON ${CJSON_VERSION} (json)" CJSON_FOUND)
