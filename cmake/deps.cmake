# cmake/deps.cmake — libraries used by individual layers, found with pkg-config.
pkg_check_modules(CJSON REQUIRED IMPORTED_TARGET libcjson) # cJSON (json: configs, tokenizer.json, requests)
target_link_libraries(liandan PUBLIC PkgConfig::CJSON)
ld_report("cJSON ${CJSON_VERSION}" CJSON_FOUND)
