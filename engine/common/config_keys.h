/* Private to the config module (config.c and config_keys.c): the key table's interface to the
 * line parser. Nothing else includes this; the rest of the engine uses config.h. */
#ifndef SCEPD_CONFIG_KEYS_H
#define SCEPD_CONFIG_KEYS_H

#include <stddef.h>

#include "engine/common/config.h"

/* Index of the section called name[0..n) or -1 when there is no such section. */
int config_section_find(const char *name, size_t n);

/* Sets key[0..kl) of section (an index from config_section_find) from the raw value text
 * [v, vend) (unquoted by config_parse_value; relative paths resolved against base_dir, which
 * may be NULL). A retired key set off is accepted and ignored. Returns 0, or -1 with the
 * reason (without "line N") in why. */
int config_key_set(config *cfg, int section, const char *key, size_t kl, const char *v,
                   const char *vend, const char *base_dir, char *why, size_t whylen);

#endif
