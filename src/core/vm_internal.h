/* Internal state shared by the builder and the VM. */
#ifndef EMBER_CORE_VM_INTERNAL_H
#define EMBER_CORE_VM_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "ember/ember.h"
#include "ember/guest_abi.h"

#define EMBER_MAX_OBSERVERS 16
#define EMBER_MAX_RLIMITS   EMBER_ABI_MAX_RLIMITS

struct ember_rlimit_cfg {
        uint32_t resource;
        uint64_t soft, hard;
};

struct ember_observer {
        ember_exit_observer fn;
        void *user;
};

/* Everything the user configured; validated by ember_builder_build. */
struct ember_config {
        unsigned vcpus;
        size_t memory_mib;
        char *kernel_path;
        char *cmdline_extra;
        char *initramfs_path;
        char *save_initramfs_path; /* write the generated initramfs here, or NULL */
        char *kernel_log_path;
        char *rootfs;
        char *exec_path;
        char **argv; /* NULL-terminated */
        size_t argc;
        char **env; /* "KEY=VALUE", NULL-terminated */
        size_t envc;
        char *workdir;
        char *hostname;
        bool has_user;
        uint32_t uid, gid;
        struct ember_rlimit_cfg rlimit[EMBER_MAX_RLIMITS];
        size_t nrlimits;
        bool as_pid1;
        bool allow_software_kvm;
        int in_fd, out_fd, err_fd;
        char *console_output;
        struct ember_observer observer[EMBER_MAX_OBSERVERS];
        size_t nobservers;
        /* devices (src/core/device_table.c) */
        bool no_rng;
        bool balloon;
        unsigned balloon_flags; /* EMBER_BALLOON_* */
};

#endif
