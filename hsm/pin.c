/* hsm/pin.c: the token PIN kept for re-login, in a page of its own that is locked in RAM,
 * left out of core dumps and (where the kernel can) zero in a forked child. */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "hsm/internal.h"

int hsm_pin_keep(hsm_pin *p, const char *pin)
{
    int rc = -1;
    long psz = sysconf(_SC_PAGESIZE);
    size_t len = strlen(pin);
    size_t pagelen = psz > 0 ? (size_t)psz : 4096;
    unsigned char *page;

    if (len >= pagelen) {
        hsm_set_error("PIN too long");
        return -1;
    }
    page = mmap(NULL, pagelen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED) {
        hsm_set_error("cannot map memory for the PIN: %s", strerror(errno));
        return -1;
    }
    if (mlock(page, pagelen) != 0) {
        hsm_set_error("cannot lock memory for the PIN (RLIMIT_MEMLOCK?): %s", strerror(errno));
        goto out;
    }
    if (madvise(page, pagelen, MADV_DONTDUMP) != 0) {
        hsm_set_error("cannot exclude the PIN from core dumps: %s", strerror(errno));
        goto out;
    }
#ifdef MADV_WIPEONFORK
    (void)madvise(page, pagelen, MADV_WIPEONFORK);      /* best effort: kernels >= 4.14 */
#endif
    memcpy(page, pin, len);
    rc = 0;
out:
    if (rc == 0) {
        p->page = page;
        p->pagelen = pagelen;
        p->len = len;
    } else {
        munlock(page, pagelen);
        munmap(page, pagelen);
    }
    return rc;
}

void hsm_pin_wipe(hsm_pin *p)
{
    if (p->page == NULL)
        return;
    OPENSSL_cleanse(p->page, p->pagelen);
    munlock(p->page, p->pagelen);
    munmap(p->page, p->pagelen);
    p->page = NULL;
    p->pagelen = 0;
    p->len = 0;
}
