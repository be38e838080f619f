/* ember guest/host ABI, shared by the VMM and ember-init (the guest's PID 1).
 *
 * Versioned: a change that an older peer would misread bumps EMBER_ABI_VERSION.
 * Everything the guest sends through this ABI is untrusted by the host.
 */
#ifndef EMBER_GUEST_ABI_H
#define EMBER_GUEST_ABI_H

#include <stdint.h>

#define EMBER_ABI_VERSION 1u

/* Status port: 4 bytes of x86 port I/O. The guest writes 32-bit words
 *   bits 31..24 command, bits 23..0 argument.
 * A 32-bit read returns EMBER_ABI_PORT_MAGIC, so init can tell it runs under ember. */
#define EMBER_ABI_PORT       0x0eb0u
#define EMBER_ABI_PORT_LEN   4u
#define EMBER_ABI_PORT_MAGIC 0x454d4252u /* "EMBR" */

#define EMBER_ABI_CMD_SHIFT 24
#define EMBER_ABI_ARG_MASK  0x00ffffffu
/* init started; argument: EMBER_ABI_VERSION. Any other version stops the VM with an error
 * naming both, and the port takes nothing more from that guest. */
#define EMBER_ABI_CMD_INIT_REACHED 0x01u
/* the workload is about to be exec'd (boot-time marker); argument 0. */
#define EMBER_ABI_CMD_EXEC 0x02u
/* the workload ended; argument: exit status 0..255 (128+N for signal N). Ends the VM at once. */
#define EMBER_ABI_CMD_EXIT 0x03u

#define EMBER_ABI_WORD(cmd, arg)                                                                   \
        (((uint32_t)(cmd) << EMBER_ABI_CMD_SHIFT) | ((arg)&EMBER_ABI_ARG_MASK))

/* Exit statuses that ember-init itself reports (as a shell would). */
#define EMBER_EXIT_SETUP_FAILED   125 /* init could not set up the workload's environment */
#define EMBER_EXIT_NOT_EXECUTABLE 126
#define EMBER_EXIT_NOT_FOUND      127

/* Where things live in the initramfs that ember generates. */
#define EMBER_ABI_INIT_PATH   "/.ember/init"   /* passed as rdinit= */
#define EMBER_ABI_CONFIG_PATH "/.ember/config" /* encoded exec configuration, below */

/* virtio-console port names (multiport; guest sees /sys/class/virtio-ports/<port>/name). */
#define EMBER_ABI_PORT_STDIN  "ember.stdin"
#define EMBER_ABI_PORT_STDOUT "ember.stdout"
#define EMBER_ABI_PORT_STDERR "ember.stderr"

/* Exec configuration file: a header, then records. All integers little-endian.
 *   header: char magic[8] = EMBER_ABI_CFG_MAGIC; u32 version; u32 total_len (header included)
 *   record: u16 type; u16 reserved (0); u32 len; u8 value[len]
 * Strings are not NUL-terminated and must not contain NUL. Unknown record types are an error. */
#define EMBER_ABI_CFG_MAGIC   "EMBERCFG"
#define EMBER_ABI_CFG_HDR_LEN 16u
#define EMBER_ABI_CFG_REC_LEN 8u
#define EMBER_ABI_CFG_MAX_LEN (16u << 20)

enum ember_abi_cfg_type {
        EMBER_CFG_EXEC_PATH = 1, /* string: program to run (looked up in PATH if no '/') */
        EMBER_CFG_ARG = 2,       /* string, repeated, in order: argv[0..] */
        EMBER_CFG_ENV = 3,       /* string "KEY=VALUE", repeated */
        EMBER_CFG_WORKDIR = 4,   /* string: absolute path */
        EMBER_CFG_UID = 5,       /* u32 */
        EMBER_CFG_GID = 6,       /* u32 */
        EMBER_CFG_RLIMIT = 7,    /* u32 resource (Linux RLIMIT_* number); u64 soft; u64 hard */
        EMBER_CFG_HOSTNAME = 8,  /* string */
        EMBER_CFG_FLAGS = 9,     /* u32, EMBER_CFG_FLAG_* */
};

/* Limits both sides enforce: the host refuses a configuration past them, init refuses to read
 * one. */
#define EMBER_ABI_PATH_MAX     4095u /* a path, without its NUL (Linux's PATH_MAX - 1) */
#define EMBER_ABI_HOSTNAME_MAX 64u   /* HOST_NAME_MAX */
#define EMBER_ABI_MAX_RLIMITS  16u   /* EMBER_CFG_RLIMIT records */

#define EMBER_CFG_FLAG_PID1 0x1u /* exec the workload as PID 1 instead of a child of init */

#endif
