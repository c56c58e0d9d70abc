/* Fuzz target: arbitrary bytes into config_parse (with and without base_dir) and the value
 * parsers. Any crash, over-read or unterminated error message is a bug. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/common/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    config cfg;
    char err[128];

    /* An exact-size heap copy, so ASan sees any read past len. */
    char *text = malloc(size ? size : 1);
    if (text == NULL)
        return 0;
    if (size > 0)
        memcpy(text, data, size);

    config_defaults(&cfg);
    memset(err, 'x', sizeof(err));
    if (config_parse(&cfg, text, size, "/base", err, sizeof(err)) != 0) {
        if (memchr(err, '\0', sizeof(err)) == NULL)
            abort();
    } else if (cfg.listen_host[sizeof(cfg.listen_host) - 1] != '\0'
               || cfg.state_dir[sizeof(cfg.state_dir) - 1] != '\0'
               || cfg.challenge[sizeof(cfg.challenge) - 1] != '\0') {
        abort();
    }
    config_defaults(&cfg);
    config_parse(&cfg, text, size, NULL, NULL, 0);

    /* The value parsers take C strings. */
    char *s = malloc(size + 1);
    if (s != NULL) {
        memcpy(s, data, size);
        s[size] = '\0';
        size_t n;
        (void)config_parse_duration_ms(s);
        (void)config_parse_size(s, &n);
        free(s);
    }
    free(text);
    return 0;
}
