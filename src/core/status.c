/* core/status.c — names and messages of ld_status codes, generated from LD_STATUS_TABLE. */
#include "liandan/status.h"

const char *ld_status_name(ld_status s) {
    switch (s) {
#define LD_STATUS_NAME_(name, value, msg) \
    case name:                            \
        return #name;
        LD_STATUS_TABLE(LD_STATUS_NAME_)
#undef LD_STATUS_NAME_
    }
    return "LD_UNKNOWN_STATUS";
}

const char *ld_status_message(ld_status s) {
    switch (s) {
#define LD_STATUS_MSG_(name, value, msg) \
    case name:                           \
        return msg;
        LD_STATUS_TABLE(LD_STATUS_MSG_)
#undef LD_STATUS_MSG_
    }
    return "unknown status code";
}
