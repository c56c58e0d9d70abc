/* profile_internal: what the files of the profile module share (profile_parse.c,
 * profile.c, profile_check.c). Not for use outside engine/policy/profile*.c. */
#ifndef SCEPD_PROFILE_INTERNAL_H
#define SCEPD_PROFILE_INTERNAL_H

/* The PROFILE_CURVE_* bit of an EC group name as the key reports it (OpenSSL's or the NIST
 * spelling, case-insensitive, the same words ec_curves accepts); 0 if the curve is unknown.
 * The word table lives in profile_parse.c. */
unsigned profile_curve_bit(const char *group);

#endif
