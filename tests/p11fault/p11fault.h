/* p11fault: a PKCS#11 module for tests that forwards every call to a real module (SoftHSM)
 * and injects faults on demand: latency, a rated speed, failures with a chosen CKR, and dropped
 * sessions. scepd loads it as its `[keys] pkcs11_module` like any other module; the only
 * exported symbol is C_GetFunctionList (the standard one, declared by <p11-kit/pkcs11.h>).
 * docs/testing-p11fault.md shows it in use.
 *
 * Environment (read once, by the first C_GetFunctionList):
 *   P11FAULT_MODULE   the real module (default P11FAULT_DEFAULT_MODULE)
 *   P11FAULT_CONTROL  the control file; unset = no faults, the module is a plain forwarder
 *   P11FAULT_LOG      the operation log; unset = no log
 *
 * Control file: one directive per line, blank lines and `#` comments ignored. TARGET is a
 * function name (C_Sign), `private` (the calls that use a private key and complete an
 * operation: C_Sign, C_SignFinal, C_SignRecover, C_Decrypt, C_DecryptFinal, C_UnwrapKey,
 * C_DeriveKey) or `*` (every function but C_Initialize, C_Finalize, C_GetFunctionList).
 *
 *   latency TARGET MS        sleep MS milliseconds before each call of TARGET (a network round
 *                            trip). When several lines match, the most specific one counts
 *                            (a function name, then `private`, then `*`).
 *   hang TARGET              each call of TARGET blocks before it reaches the real module until
 *                            a version of the file without a `hang` line for it is loaded
 *                            (polled every 20 ms): a network HSM that stops answering. The
 *                            call then goes on (latency, rate, forwarding) as the new file says.
 *                            Logged once per call, when it starts waiting: `SEQ FN hang`.
 *   rate OPS [BURST]         at most OPS private-key operations per second across the process
 *                            (a token bucket holding BURST tokens, default 1; callers beyond it
 *                            wait their turn, in order). `rate 0` = no cap.
 *   fail TARGET N|always CKR fail the next N calls of TARGET (or every call) with CKR, given by
 *                            name (CKR_DEVICE_ERROR) or number (0x30). The failing call does
 *                            not reach the real module, except that an operation it would have
 *                            ended (C_Sign after C_SignInit) is ended there too, so the session
 *                            stays usable as PKCS#11 requires. The first matching line with
 *                            calls left wins.
 *   invalidate_sessions [logout]
 *                            every session open when the file is loaded becomes invalid: calls
 *                            on its handle return CKR_SESSION_HANDLE_INVALID (C_CloseSession
 *                            too, after closing it in the real module) while C_OpenSession
 *                            keeps working. With `logout` the user is also logged out in the
 *                            real module, so new sessions must C_Login again (a network HSM
 *                            that lost its connection); without it the login survives.
 *
 * The file is checked with stat(2) on every call and reloaded when its device, inode, size or
 * mtime differ from the version loaded last. A reload replaces every setting, re-arms the
 * `fail` counts as written and applies `invalidate_sessions` once. Change the file by writing
 * a new one and renaming it over the old (a new inode: a change is never missed, and a call
 * never reads half a file). A missing file means no faults. A line that does not parse is
 * reported on stderr and in the log and ignored.
 *
 * Log: one line per call, appended with one write(2) (lines of concurrent calls never mix):
 *   SEQ FUNCTION CKR_NAME OUTCOME [s=SESSION]
 * OUTCOME is `real` (forwarded; CKR_NAME is the real module's answer), `fault` (failed by a
 * `fail` line) or `dead` (refused: invalidated session). SEQ counts calls from 1 in this
 * process. Reloads and parse errors add `SEQ reload DIRECTIVES` and `SEQ error LINE: TEXT`.
 * Count private-key operations with e.g. grep -c ' C_Sign CKR_OK real'.
 *
 * Threads: every entry point may be called concurrently (scepd's crypto workers do); the
 * settings, counts, bucket and session table sit behind one mutex that is never held while
 * sleeping or while the real module runs an operation.
 */
#ifndef SCEPD_P11FAULT_H
#define SCEPD_P11FAULT_H

#define P11FAULT_ENV_MODULE  "P11FAULT_MODULE"
#define P11FAULT_ENV_CONTROL "P11FAULT_CONTROL"
#define P11FAULT_ENV_LOG     "P11FAULT_LOG"
#define P11FAULT_DEFAULT_MODULE "/usr/lib/softhsm/libsofthsm2.so"

#endif
