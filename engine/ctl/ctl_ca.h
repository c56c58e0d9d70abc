/* ctl_ca: the CA lifecycle commands of scepctl (docs/ca.md).
 *
 *   scepctl -c CONF ca init-root --subject DN [--key SPEC] [--days N]
 *   scepctl -c CONF ca init-intermediate --subject DN [--key SPEC] --csr-out FILE
 *   scepctl -c CONF ca import --cert FILE [--chain FILE] [--force]
 *   scepctl -c CONF ca stage-next [--subject DN] [--key SPEC] [--days N]
 *   scepctl -c CONF ca activate-next
 *   scepctl -c CONF ca export --der|--pem [--root|--all] [--out FILE]
 *   scepctl -c CONF ra renew [--days N] [--new-key] [--subject DN]
 *
 * SPEC: rsa:2048 | rsa:3072 | rsa:4096 | ec:P-256 | ec:P-384. Keys are generated inside the
 * token (hsm_key_generate) in pkcs11 mode, or written as 0600 PEM files in file mode.
 */
#ifndef SCEPD_CTL_CA_H
#define SCEPD_CTL_CA_H

#include "engine/common/config.h"

/* argv[0] is "ca" or "ra", argv[1] the subcommand. Returns the process exit status:
 * 0 done, 1 failed (message on stderr), 2 usage. */
int ctl_ca_main(const config *cfg, int argc, char **argv);

#endif
