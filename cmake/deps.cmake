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

# utf8proc (data: NFKC normalisation of corpora)
pkg_check_modules(UTF8PROC REQUIRED IMPORTED_TARGET libutf8proc)
target_link_libraries(liandan PUBLIC PkgConfig::UTF8PROC)
ld_report("utf8proc ${UTF8PROC_VERSION} (data: NFKC)" UTF8PROC_FOUND)

# OpenCC (data: Traditional -> Simplified Chinese; optional)
pkg_check_modules(OPENCC IMPORTED_TARGET opencc)
if(OPENCC_FOUND)
  target_link_libraries(liandan PUBLIC PkgConfig::OPENCC)
  target_compile_definitions(liandan PRIVATE LD_HAVE_OPENCC=1)
endif()
ld_report("OpenCC ${OPENCC_VERSION} (data: Traditional->Simplified, optional)" OPENCC_FOUND)


# libpng and libjpeg(-turbo) (data: decoding images for the image-text model; optional, a build
# without them reads raw and emoji_clip data and reports PNG/JPEG input as unsupported)
pkg_check_modules(PNG IMPORTED_TARGET libpng)
if(PNG_FOUND)
  target_link_libraries(liandan PUBLIC PkgConfig::PNG)
  target_compile_definitions(liandan PRIVATE LD_HAVE_PNG=1)
endif()
ld_report("libpng ${PNG_VERSION} (data: PNG images, optional)" PNG_FOUND)
pkg_check_modules(JPEG IMPORTED_TARGET libjpeg)
if(JPEG_FOUND)
  target_link_libraries(liandan PUBLIC PkgConfig::JPEG)
  target_compile_definitions(liandan PUBLIC LD_HAVE_JPEG=1) # (test_image makes JPEGs with it)
endif()
ld_report("libjpeg ${JPEG_VERSION} (data: JPEG images, optional)" JPEG_FOUND)

# libmicrohttpd (serve: the HTTP server)
pkg_check_modules(MHD REQUIRED IMPORTED_TARGET libmicrohttpd)
target_link_libraries(liandan PUBLIC PkgConfig::MHD)
ld_report("libmicrohttpd ${MHD_VERSION} (serve)" MHD_FOUND)

# SQLite (registry: keys, files, models, jobs)
pkg_check_modules(SQLITE3 REQUIRED IMPORTED_TARGET sqlite3)
target_link_libraries(liandan PUBLIC PkgConfig::SQLITE3)
ld_report("SQLite ${SQLITE3_VERSION} (registry)" SQLITE3_FOUND)

find_package(Threads REQUIRED)
target_link_libraries(liandan PUBLIC Threads::Threads)

# The web UI (serve): src/serve/ui/* compiled into the library as byte arrays at build time.
file(GLOB LD_UI_FILES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/serve/ui/*)
set(LD_UI_C ${CMAKE_BINARY_DIR}/generated/ui_assets.c)
add_custom_command(OUTPUT ${LD_UI_C}
  COMMAND ${CMAKE_COMMAND} -DOUT=${LD_UI_C} "-DFILES=${LD_UI_FILES}" -DROOT=${CMAKE_SOURCE_DIR}/src/serve/ui
          -P ${CMAKE_SOURCE_DIR}/cmake/embed_files.cmake
  DEPENDS ${LD_UI_FILES} ${CMAKE_SOURCE_DIR}/cmake/embed_files.cmake
  COMMENT "Embedding the web UI")
target_sources(liandan PRIVATE ${LD_UI_C})
