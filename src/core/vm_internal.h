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

struct ember_disk_cfg {
        char *path;
        char *serial; /* NULL: "ember-vdX" */
        bool read_only;
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
        /* Names the guest resolves (ember_builder_exec_user_spec): a user name replaces uid, a
         * group name gid; a user name without a group takes its groups from the guest's files. */
        char *user_name;
        char *group_name;
        bool group_from_user;
        struct ember_rlimit_cfg rlimit[EMBER_MAX_RLIMITS];
        size_t nrlimits;
        bool as_pid1;
        bool allow_software_kvm;
        int in_fd, out_fd, err_fd;
        char *console_output;
        bool tty; /* ember_builder_console_tty: stdin framed for ember-init's pty (core/tty.c) */
        struct ember_observer observer[EMBER_MAX_OBSERVERS];
        size_t nobservers;
        /* devices (src/core/device_table.c) */
        bool no_rng;
        /* virtio-blk: disk[0] is the root disk when root_disk is set */
        struct ember_disk_cfg disk[EMBER_MAX_DISKS];
        unsigned ndisks;
        bool root_disk;
        char *root_fstype; /* given, or detected at build */
        bool balloon;
        unsigned balloon_flags; /* EMBER_BALLOON_* */
};

#endif
