#include "engine/scep/reject.h"

static const struct {
    int failinfo;
    const char *diag;
    const char *text;
} rejects[REJ__COUNT] = {
#define X(name, fi, dg, tx) [REJ_##name] = {SCEP_FAIL_##fi, dg, tx},
    SCEP_REJECTS(X)
#undef X
};

int reject_failinfo(int rej)
{
#ifdef SCEPD_MUTANT_BADREQUEST_AS_BADALG   /* test-only breakage, docs/testing-mutants.md */
    if (rej >= 0 && rej < REJ__COUNT && rejects[rej].failinfo == SCEP_FAIL_BADREQUEST)
        return SCEP_FAIL_BADALG;
#endif
    return rej >= 0 && rej < REJ__COUNT ? rejects[rej].failinfo : SCEP_FAIL_BADREQUEST;
}

const char *reject_diag(int rej)
{
    return rej >= 0 && rej < REJ__COUNT ? rejects[rej].diag : "unknown";
}

const char *reject_text(int rej)
{
    return rej >= 0 && rej < REJ__COUNT ? rejects[rej].text : "unknown";
}
