/* Error text helper shared by every module (kept apart so that devices need not include the
 * VM's internals). */
#ifndef EMBER_CORE_ERR_H
#define EMBER_CORE_ERR_H

#include <stddef.h>

#define EMBER_ERR_LEN 512

/* printf into an error buffer (NULL or 0 length: nothing written); returns -err (err may be
 * given as a positive errno or a negative one), so call sites can `return ember_errf(...)`.
 * The arguments must not point into `buf`. */
int ember_errf(char *buf, size_t len, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
