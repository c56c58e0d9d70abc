# Install rules for every program and file scepd ships, and the Debian package built from
# them by CPack (`make deb`, packaging/build-deb.sh; docs/packaging.md).
#
# The layout is Debian's: programs, man pages and documentation under CMAKE_INSTALL_PREFIX
# (/usr for the package), the configuration in /etc/scepd, the unit in /lib/systemd/system,
# state in /var/lib/scepd and logs in /var/log/scepd (made by the maintainer scripts). The
# unit and the packaged configuration name /usr/sbin/scepd and those directories, so a
# package must be configured with -DCMAKE_INSTALL_PREFIX=/usr (build-deb.sh does).
include(GNUInstallDirs)

# The version is the latest entry of packaging/changelog: one place to bump it.
file(STRINGS ${CMAKE_SOURCE_DIR}/packaging/changelog SCEPD_CHANGELOG_TOP LIMIT_COUNT 1)
if(NOT SCEPD_CHANGELOG_TOP MATCHES "^scepd \\(([0-9][0-9.]*)-([0-9a-z.+~]+)\\)")
  message(FATAL_ERROR "packaging/changelog: first line is not 'scepd (VERSION-REVISION) ...'")
endif()
set(SCEPD_VERSION ${CMAKE_MATCH_1})
set(SCEPD_DEB_REVISION ${CMAKE_MATCH_2})

set(SCEPD_ETC /etc/scepd)
set(SCEPD_STATE /var/lib/scepd)
set(SCEPD_LOG /var/log/scepd)
set(SCEPD_DOC ${CMAKE_INSTALL_DATADIR}/doc/scepd)
set(SCEPD_PKG_OUT ${CMAKE_BINARY_DIR}/packaging)

# ---- programs
install(TARGETS scepd scepctl RUNTIME DESTINATION ${CMAKE_INSTALL_SBINDIR})
install(TARGETS scep-loadgen RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
# A stripped install (cpack, cmake --install --strip) also drops the compiler's .comment and
# the .note section, as dh_strip does for Debian's own packages.
set(SCEPD_STRIP_FILES "${CMAKE_INSTALL_SBINDIR}/scepd;${CMAKE_INSTALL_SBINDIR}/scepctl;${CMAKE_INSTALL_BINDIR}/scep-loadgen")
string(CONFIGURE [[
  if(CMAKE_INSTALL_DO_STRIP)
    foreach(f @SCEPD_STRIP_FILES@)
      execute_process(COMMAND strip --remove-section=.comment --remove-section=.note
                              "$ENV{DESTDIR}${CMAKE_INSTALL_PREFIX}/${f}" COMMAND_ERROR_IS_FATAL ANY)
    endforeach()
  endif()
]] strip_code @ONLY)
install(CODE "${strip_code}")

# ---- configuration: the example with the package's paths. Each override replaces the value
# of one key in its section and keeps the comment after it, so every key the example lists
# (at its default) stays in the installed file, documented.
set(SCEPD_CONF_OVERRIDES
  "server|state_dir|${SCEPD_STATE}"
  "server|audit_log|${SCEPD_LOG}/audit.log"
  "keys|pin_file|${SCEPD_STATE}/pin"
  "keys|module_env|SOFTHSM2_CONF=${SCEPD_STATE}/softhsm2.conf"
  "keys|ca_cert|${SCEPD_STATE}/ca.pem"
  "keys|ra_cert|${SCEPD_STATE}/ra.pem"
  "store|path|${SCEPD_STATE}/store"
  "issue|challenge_file|${SCEPD_STATE}/challenge"
  "issue|profiles_dir|${SCEPD_ETC}/profiles"
  "crl|file|${SCEPD_STATE}/crl/ca.crl")
# Read as lines with ";" hidden, since CMake lists split on it (the comments use it).
file(READ ${CMAKE_SOURCE_DIR}/conf/scepd.conf.example example)
string(REPLACE ";" "@SEMI@" example "${example}")
string(REGEX REPLACE "\n$" "" example "${example}")
string(REPLACE "\n" ";" SCEPD_EXAMPLE_LINES "${example}")
string(CONCAT conf
  "# /etc/scepd/scepd.conf: the configuration of the scepd package, made from\n"
  "# conf/scepd.conf.example (every key, at its default) with the package's paths:\n"
  "# state in ${SCEPD_STATE}, the audit log in ${SCEPD_LOG}. See scepd.conf(5).\n")
set(section "")
set(applied 0)
foreach(line IN LISTS SCEPD_EXAMPLE_LINES)
  if(line MATCHES "^\\[([a-z]+)\\]")
    set(section ${CMAKE_MATCH_1})
  elseif(line MATCHES "^([a-z_0-9]+) *=")
    set(key ${CMAKE_MATCH_1})
    foreach(o IN LISTS SCEPD_CONF_OVERRIDES)
      string(REPLACE "|" ";" o "${o}")
      list(GET o 0 osec)
      list(GET o 1 okey)
      list(GET o 2 oval)
      if(osec STREQUAL section AND okey STREQUAL key)
        # The example's comments start in column 34; keep them there when the value fits.
        set(comment "")
        if(line MATCHES "[ ](#.*)$")
          set(comment "${CMAKE_MATCH_1}")
        endif()
        set(line "${key} = ${oval}")
        string(LENGTH "${line}" len)
        set(pad 1)
        if(len LESS 33)
          math(EXPR pad "33 - ${len}")
        endif()
        string(REPEAT " " ${pad} spaces)
        if(comment)
          set(line "${line}${spaces}${comment}")
        endif()
        math(EXPR applied "${applied} + 1")
      endif()
    endforeach()
  endif()
  string(REPLACE "@SEMI@" ";" line "${line}")
  string(APPEND conf "${line}\n")
endforeach()
list(LENGTH SCEPD_CONF_OVERRIDES n_overrides)
if(NOT applied EQUAL n_overrides)
  message(FATAL_ERROR "conf/scepd.conf.example: ${applied} of the ${n_overrides} keys the "
                      "package sets were found (cmake/Packaging.cmake, SCEPD_CONF_OVERRIDES)")
endif()
file(WRITE ${SCEPD_PKG_OUT}/scepd.conf.new "${conf}")
configure_file(${SCEPD_PKG_OUT}/scepd.conf.new ${SCEPD_PKG_OUT}/scepd.conf COPYONLY)
install(FILES ${SCEPD_PKG_OUT}/scepd.conf DESTINATION ${SCEPD_ETC})

# The legacy profile (single DES, RFC 8894's MUST NOT) is not enabled by the package: it goes
# with the examples, for an operator who must serve old clients to copy on purpose.
file(GLOB SCEPD_PROFILES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/conf/profiles/*.conf)
list(REMOVE_ITEM SCEPD_PROFILES ${CMAKE_SOURCE_DIR}/conf/profiles/legacy.conf)
install(FILES ${SCEPD_PROFILES} DESTINATION ${SCEPD_ETC}/profiles)
install(FILES conf/profiles/legacy.conf DESTINATION ${SCEPD_DOC}/examples/profiles)
install(FILES packaging/scepd.logrotate DESTINATION /etc/logrotate.d RENAME scepd)
install(FILES packaging/scepd.service DESTINATION /lib/systemd/system)

# Every file under /etc is a conffile: dpkg keeps the administrator's changes on upgrade.
set(conffiles "${SCEPD_ETC}/scepd.conf\n/etc/logrotate.d/scepd\n")
foreach(p IN LISTS SCEPD_PROFILES)
  get_filename_component(name ${p} NAME)
  string(APPEND conffiles "${SCEPD_ETC}/profiles/${name}\n")
endforeach()
file(WRITE ${SCEPD_PKG_OUT}/conffiles.new "${conffiles}")
configure_file(${SCEPD_PKG_OUT}/conffiles.new ${SCEPD_PKG_OUT}/conffiles COPYONLY)

# ---- man pages and the Debian changelog, compressed as Debian wants them (gzip -9n: no
# name or time stamp, so the package is reproducible).
set(SCEPD_MAN_PAGES scepd.8 scepctl.8 scep-loadgen.1 scepd.conf.5)
set(gz_outputs "")
foreach(page IN LISTS SCEPD_MAN_PAGES)
  string(REGEX REPLACE "^.*\\.([0-9])$" "\\1" sect ${page})
  set(gz ${SCEPD_PKG_OUT}/man/${page}.gz)
  add_custom_command(OUTPUT ${gz}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${SCEPD_PKG_OUT}/man
    COMMAND gzip -9nc ${CMAKE_SOURCE_DIR}/docs/man/${page} > ${gz}
    DEPENDS ${CMAKE_SOURCE_DIR}/docs/man/${page} VERBATIM)
  list(APPEND gz_outputs ${gz})
  install(FILES ${gz} DESTINATION ${CMAKE_INSTALL_MANDIR}/man${sect})
endforeach()
set(changelog_gz ${SCEPD_PKG_OUT}/changelog.Debian.gz)
add_custom_command(OUTPUT ${changelog_gz}
  COMMAND gzip -9nc ${CMAKE_SOURCE_DIR}/packaging/changelog > ${changelog_gz}
  DEPENDS ${CMAKE_SOURCE_DIR}/packaging/changelog VERBATIM)
add_custom_target(scepd_package_files ALL DEPENDS ${gz_outputs} ${changelog_gz})

# ---- documentation
file(GLOB SCEPD_DOCS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/docs/*.md)
install(FILES README.md ${SCEPD_DOCS} packaging/copyright ${changelog_gz} DESTINATION ${SCEPD_DOC})
install(FILES conf/scepd.conf.example DESTINATION ${SCEPD_DOC}/examples)
install(FILES packaging/lintian-overrides DESTINATION ${CMAKE_INSTALL_DATADIR}/lintian/overrides
        RENAME scepd)

# ---- the Debian package
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME scepd)
set(CPACK_PACKAGE_VERSION ${SCEPD_VERSION})
set(CPACK_PACKAGE_VENDOR "scepd")
set(CPACK_PACKAGE_CONTACT "scepd maintainers <scepd@example.org>")
set(CPACK_PACKAGING_INSTALL_PREFIX ${CMAKE_INSTALL_PREFIX})
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_RELEASE ${SCEPD_DEB_REVISION})
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "softhsm2")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "logrotate")
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION
    "SCEP certificate enrollment server with keys in a PKCS#11 token\n"
    "scepd issues X.509 certificates to devices and MDM systems over the Simple\n"
    "Certificate Enrollment Protocol (RFC 8894). The CA and RA keys stay in a\n"
    "PKCS#11 token (SoftHSM2 or an HSM), requests are served by io_uring event\n"
    "loops, issued certificates are committed to an LMDB store before they are\n"
    "sent, and every decision is written to a JSON audit log. It also publishes\n"
    "a CRL, answers OCSP and offers certificate profiles, one-time challenges and\n"
    "manual approval.\n"
    "\n"
    "This package contains the server, the scepctl administration tool, the\n"
    "scep-loadgen load generator and a hardened systemd unit.")
string(JOIN "" CPACK_DEBIAN_PACKAGE_DESCRIPTION ${CPACK_DEBIAN_PACKAGE_DESCRIPTION})
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${CMAKE_SOURCE_DIR}/packaging/postinst
    ${CMAKE_SOURCE_DIR}/packaging/prerm
    ${CMAKE_SOURCE_DIR}/packaging/postrm
    ${SCEPD_PKG_OUT}/conffiles)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
