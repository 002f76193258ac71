/* Names for the ST_E* codes (see err.h). */
#include "base/err.h"

const char *st_strerror(int err)
{
    switch (err) {
    case ST_OK: return "ok";
    case ST_ENOMEM: return "out of memory";
    case ST_EINVAL: return "invalid input";
    case ST_ELIMIT: return "limit exceeded";
    case ST_EIO: return "I/O error";
    case ST_ENOTFOUND: return "not found";
    case ST_EEXIST: return "already exists";
    case ST_EAGAIN: return "try again";
    case ST_ECLOSED: return "closed";
    case ST_EPERM: return "not permitted";
    default: return "unknown error";
    }
}
