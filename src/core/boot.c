#include "core/boot.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arch/x86_64/cpu.h"
#include "arch/x86_64/kernel.h"
#include "arch/x86_64/layout.h"
#include "core/cmdline.h"
#include "core/guest_config.h"
#include "core/initramfs.h"
#include "ember/guest_abi.h"

/* ember-init, linked in from build/guest/ember-init (see the Makefile). */
extern const uint8_t ember_init_blob[];
extern const uint8_t ember_init_blob_end[];

#define KERNEL_MAX_BYTES    (512u << 20)
#define INITRAMFS_MAX_BYTES (2048u << 20)

/* Fills dst with n bytes of the file at offset off (ctx points at the fd): 0, -errno, or -EIO
 * when the file ends first. An x86_image_src reader. */
static int fd_read(void *ctx, uint64_t off, void *dst, uint64_t n)
{
        int fd = *(const int *)ctx;
        uint8_t *p = dst;
        while (n > 0) {
                ssize_t got = pread(fd, p, n > (1u << 30) ? (1u << 30) : n, (off_t)off);
                if (got < 0 && errno == EINTR)
                        continue;
                if (got < 0)
                        return -errno;
                if (got == 0)
                        return -EIO;
                p += got;
                off += (uint64_t)got;
                n -= (uint64_t)got;
        }
        return 0;
}

static int read_failed(char *err, size_t errlen, const char *what, const char *path, int rc)
{
        return ember_errf(err, errlen, -rc, "%s '%s': read failed%s%s", what, path,
                          rc == -EIO ? " (file shrank)" : ": ", rc == -EIO ? "" : strerror(-rc));
}

/* Opens a user-given regular file of 1 to max bytes; *fd is -1 on failure. */
static int open_input(const char *path, uint64_t max, const char *what, int *fd, uint64_t *size,
                      char *err, size_t errlen)
{
        *fd = open(path, O_RDONLY | O_CLOEXEC);
        if (*fd < 0)
                return ember_errf(err, errlen, errno, "%s '%s': %s", what, path, strerror(errno));
        struct stat st;
        int rc = 0;
        if (fstat(*fd, &st) != 0)
                rc = ember_errf(err, errlen, errno, "%s '%s': %s", what, path, strerror(errno));
        else if (!S_ISREG(st.st_mode))
                rc = ember_errf(err, errlen, EINVAL, "%s '%s' is not a regular file", what, path);
        else if (st.st_size == 0 || (uint64_t)st.st_size > max)
                rc = ember_errf(err, errlen, EFBIG, "%s '%s' has %lld bytes (expected 1 to %llu)",
                                what, path, (long long)st.st_size, (unsigned long long)max);
        if (rc) {
                close(*fd);
                *fd = -1;
                return rc;
        }
        *size = (uint64_t)st.st_size;
        return 0;
}

/* Reads a whole regular file; max bounds what a user can make us allocate. */
static int read_file(const char *path, uint64_t max, uint8_t **out, size_t *len, char *err,
                     size_t errlen, const char *what)
{
        int fd;
        uint64_t size;
        int rc = open_input(path, max, what, &fd, &size, err, errlen);
        if (rc)
                return rc;
        uint8_t *buf = malloc((size_t)size);
        if (!buf)
                rc = ember_errf(err, errlen, ENOMEM, "%s '%s': out of memory", what, path);
        else if ((rc = fd_read(&fd, 0, buf, size)))
                rc = read_failed(err, errlen, what, path, rc);
        close(fd);
        if (rc) {
                free(buf);
                return rc;
        }
        *out = buf;
        *len = (size_t)size;
        return 0;
}

/* Opens and probes the kernel without reading all of it: only its headers are read now (into
 * untouched anonymous memory, so the rest costs nothing), and boot_place reads the loadable
 * parts straight into guest memory. */
static int open_kernel(const char *path, struct boot_image *img, char *err, size_t errlen)
{
        int rc = open_input(path, KERNEL_MAX_BYTES, "kernel", &img->kernel_fd, &img->kernel_len,
                            err, errlen);
        if (rc)
                return rc;
        uint8_t *sparse = mmap(NULL, img->kernel_len, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (sparse == MAP_FAILED)
                return ember_errf(err, errlen, errno, "kernel '%s': %s", path, strerror(errno));
        struct x86_image_src src = {&img->kernel_fd, fd_read, img->kernel_len};
        rc = x86_kernel_read_headers(&src, sparse);
        if (rc)
                rc = read_failed(err, errlen, "kernel", path, rc);
        else
                rc = x86_kernel_probe(sparse, img->kernel_len, path, &img->ki, err, errlen);
        munmap(sparse, img->kernel_len);
        return rc;
}

/* Writes the generated initramfs where the user asked (for another VMM, or to inspect it). */
static int save_initramfs(const char *path, const struct initramfs *ir, char *err, size_t errlen)
{
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0)
                return ember_errf(err, errlen, errno, "save initramfs '%s': %s", path,
                                  strerror(errno));
        const uint8_t *p = initramfs_data(ir);
        size_t left = initramfs_len(ir);
        while (left > 0) {
                ssize_t n = write(fd, p, left);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        int e = n < 0 ? errno : EIO;
                        close(fd);
                        return ember_errf(err, errlen, e, "save initramfs '%s': %s", path,
                                          strerror(e));
                }
                p += n;
                left -= (size_t)n;
        }
        if (close(fd) != 0)
                return ember_errf(err, errlen, errno, "save initramfs '%s': %s", path,
                                  strerror(errno));
        return 0;
}

static int encode_exec_config(const struct ember_config *cfg, uint8_t **out, size_t *len,
                              enum ember_error *code, char *err, size_t errlen)
{
        struct guest_config g = {
            .exec_path = cfg->exec_path,
            .argv = (const char *const *)cfg->argv,
            .argc = cfg->argc,
            .env = (const char *const *)cfg->env,
            .envc = cfg->envc,
            .workdir = cfg->workdir,
            .has_uid = cfg->has_user && !cfg->user_name,
            .uid = cfg->uid,
            .has_gid = cfg->has_user && !cfg->group_name && !cfg->group_from_user,
            .gid = cfg->gid,
            .user_name = cfg->user_name,
            .group_name = cfg->group_name,
            .hostname = cfg->hostname ? cfg->hostname : EMBER_DEFAULT_HOSTNAME,
            .flags = (cfg->as_pid1 ? EMBER_CFG_FLAG_PID1 : 0) | (cfg->tty ? EMBER_CFG_FLAG_TTY : 0),
            /* The root disk is the first virtio-blk device, so the guest's first disk. */
            .root_dev = cfg->root_disk ? "/dev/vda" : NULL,
            .root_fstype = cfg->root_disk ? cfg->root_fstype : NULL,
            .root_flags = cfg->root_disk && cfg->disk[0].read_only ? EMBER_CFG_ROOT_RO : 0,
        };
        for (size_t i = 0; i < cfg->nrlimits && i < GUEST_CONFIG_MAX_RLIMITS; i++) {
                g.rlimits[i].resource = cfg->rlimit[i].resource;
                g.rlimits[i].soft = cfg->rlimit[i].soft;
                g.rlimits[i].hard = cfg->rlimit[i].hard;
                g.nrlimits++;
        }
        int rc = guest_config_encode(&g, out, len, err, errlen);
        if (rc)
                *code = EMBER_ERR_EXEC;
        return rc;
}

/* The initramfs: the user's extra archive (if any), the root tree, then ember's own files, so
 * that /.ember/init and /.ember/config win over anything of the same name. */
static int build_initramfs(const struct ember_config *cfg, struct initramfs *ir,
                           enum ember_error *code, char *err, size_t errlen)
{
        int rc;
        if (cfg->initramfs_path) {
                uint8_t *extra = NULL;
                size_t extra_len = 0;
                rc = read_file(cfg->initramfs_path, INITRAMFS_MAX_BYTES, &extra, &extra_len, err,
                               errlen, "initramfs");
                if (rc) {
                        *code = EMBER_ERR_INITRAMFS;
                        return rc;
                }
                rc = initramfs_add_raw(ir, extra, extra_len);
                free(extra);
                if (rc) {
                        *code = EMBER_ERR_RESOURCE;
                        return ember_errf(err, errlen, rc, "initramfs: %s", strerror(-rc));
                }
        }
        if (cfg->rootfs) {
                rc = initramfs_add_tree(ir, cfg->rootfs, err, errlen);
                if (rc) {
                        *code = EMBER_ERR_ROOTFS;
                        return rc;
                }
        }
        uint8_t *conf;
        size_t conf_len;
        if ((rc = encode_exec_config(cfg, &conf, &conf_len, code, err, errlen)))
                return rc;
        size_t init_len = (size_t)(ember_init_blob_end - ember_init_blob);
        rc = initramfs_add_dir(ir, ".ember", 0700);
        if (!rc)
                rc = initramfs_add_file(ir, ".ember/init", ember_init_blob, init_len, 0755);
        if (!rc)
                rc = initramfs_add_file(ir, ".ember/config", conf, conf_len, 0400);
        free(conf);
        if (!rc)
                rc = initramfs_finish(ir);
        if (rc) {
                *code = EMBER_ERR_RESOURCE;
                return ember_errf(err, errlen, rc, "initramfs: %s", strerror(-rc));
        }
        return 0;
}

static int build_cmdline(const struct ember_config *cfg, const char *devices, uint32_t max,
                         struct cmdline *cl, enum ember_error *code, char *err, size_t errlen)
{
        /* panic=-1 and reboot=k turn a guest panic into an immediate i8042 reset, which ends the
         * VM; the kernel log goes to the serial port only when asked for. */
        int rc = cmdline_set_max(cl, max);
        if (!rc)
                rc = cmdline_append(cl, "reboot=k panic=-1 panic_print=0 nomodule");
        if (!rc)
                rc = cmdline_append(cl, cfg->kernel_log_path ? "console=ttyS0"
                                                             : "console=ttyS0 quiet loglevel=0");
        if (!rc)
                rc = cmdline_append(cl, "rdinit=" EMBER_ABI_INIT_PATH);
        if (!rc)
                rc = cmdline_append(cl, devices);
        if (!rc && cfg->cmdline_extra)
                rc = cmdline_append(cl, cfg->cmdline_extra);
        if (rc) {
                *code = EMBER_ERR_CMDLINE;
                return ember_errf(err, errlen, rc, "kernel command line: %s", cmdline_errmsg(cl));
        }
        return 0;
}

int boot_open_kernel(const struct ember_config *cfg, struct boot_image *img, enum ember_error *code,
                     char *err, size_t errlen)
{
        memset(img, 0, sizeof(*img));
        initramfs_init(&img->initramfs);
        cmdline_init(&img->cmdline);
        img->kernel_fd = -1;
        int rc = open_kernel(cfg->kernel_path, img, err, errlen);
        if (rc)
                *code = EMBER_ERR_KERNEL;
        return rc;
}

int boot_prepare_initramfs(const struct ember_config *cfg, struct boot_image *img,
                           enum ember_error *code, char *err, size_t errlen)
{
        int rc = build_initramfs(cfg, &img->initramfs, code, err, errlen);
        if (rc)
                return rc;
        if (cfg->save_initramfs_path &&
            (rc = save_initramfs(cfg->save_initramfs_path, &img->initramfs, err, errlen))) {
                *code = EMBER_ERR_INITRAMFS;
                return rc;
        }
        return 0;
}

int boot_prepare_cmdline(const struct ember_config *cfg, const char *devices_cmdline,
                         struct boot_image *img, enum ember_error *code, char *err, size_t errlen)
{
        return build_cmdline(cfg, devices_cmdline, img->ki.cmdline_max, &img->cmdline, code, err,
                             errlen);
}

void boot_image_free(struct boot_image *img)
{
        if (img->kernel_fd >= 0)
                close(img->kernel_fd);
        img->kernel_fd = -1;
        initramfs_free(&img->initramfs);
        cmdline_free(&img->cmdline);
}

int boot_load_kernel(struct gmem *m, const struct boot_image *img, enum ember_error *code,
                     char *err, size_t errlen)
{
        struct x86_image_src src = {(void *)&img->kernel_fd, fd_read, img->kernel_len};
        int rc = x86_kernel_load_from(m, &src, &img->ki, err, errlen);
        if (rc)
                *code = rc == -ENOMEM ? EMBER_ERR_MEMORY : EMBER_ERR_KERNEL;
        return rc;
}

int boot_place(struct gmem *m, const struct boot_image *img, unsigned nvcpus,
               struct boot_result *out, enum ember_error *code, char *err, size_t errlen)
{
        memset(out, 0, sizeof(*out));
        struct x86_boot_cfg bc = {
            .kernel = &img->ki,
            .cmdline = cmdline_str(&img->cmdline),
            .initramfs = initramfs_data(&img->initramfs),
            .initramfs_len = initramfs_len(&img->initramfs),
            .ncpus = nvcpus,
        };
        int rc = x86_boot_setup(m, &bc, &out->entry, err, errlen);
        if (rc) {
                *code = rc == -ENOMEM ? EMBER_ERR_MEMORY : EMBER_ERR_INVALID;
                return rc;
        }
        out->initramfs_bytes = initramfs_len(&img->initramfs);
        return 0;
}

int boot_read_cpuid(struct ember_kvm *kvm, struct boot_result *boot, char *err, size_t errlen)
{
        int n = ember_kvm_get_supported_cpuid(kvm, boot->cpuid, EMBER_KVM_MAX_CPUID_ENTRIES);
        if (n < 0)
                return ember_errf(err, errlen, n, "%s", ember_kvm_last_error(kvm));
        boot->ncpuid = (uint32_t)n;
        /* A required capability (the guest has no PIT): checked when the VM was created. */
        x86_cpuid_host_probe(&boot->cpuid_host,
                             ember_kvm_check_extension(kvm, KVM_CAP_TSC_DEADLINE_TIMER) > 0);
        return 0;
}

int boot_setup_vcpu(struct ember_kvm_vcpu *vcpu, unsigned index, unsigned nvcpus,
                    const struct boot_result *boot, char *err, size_t errlen)
{
        struct kvm_cpuid_entry2 cpuid[EMBER_KVM_MAX_CPUID_ENTRIES];
        struct kvm_msr_entry msrs[32];
        struct kvm_lapic_state lapic;
        struct kvm_fpu fpu;
        int rc;

        memcpy(cpuid, boot->cpuid, sizeof(cpuid[0]) * boot->ncpuid);
        uint32_t ncpuid = x86_cpuid_adjust(cpuid, boot->ncpuid, EMBER_KVM_MAX_CPUID_ENTRIES, index,
                                           nvcpus, &boot->cpuid_host);
        if ((rc = ember_kvm_vcpu_set_cpuid2(vcpu, cpuid, ncpuid)))
                goto kvm_fail;
        size_t nmsrs = x86_boot_msrs(msrs, sizeof(msrs) / sizeof(msrs[0]));
        rc = ember_kvm_vcpu_set_msrs(vcpu, msrs, (uint32_t)nmsrs);
        if (rc < 0)
                goto kvm_fail;
        if ((size_t)rc != nmsrs)
                return ember_errf(err, errlen, EINVAL,
                                  "vCPU %u: KVM accepted %d of %zu boot MSRs (first refused: 0x%x)",
                                  index, rc, nmsrs, msrs[rc].index);
        if ((rc = ember_kvm_vcpu_get_lapic(vcpu, &lapic)))
                goto kvm_fail;
        x86_lapic_init(&lapic);
        x86_vcpu_init_fpu(&fpu);
        if ((rc = ember_kvm_vcpu_set_lapic(vcpu, &lapic)) ||
            (rc = ember_kvm_vcpu_set_fpu(vcpu, &fpu)))
                goto kvm_fail;
        if (index != 0)
                return 0; /* application processors wait for INIT/SIPI in the kernel's LAPIC */
        struct kvm_regs regs;
        struct kvm_sregs sregs;
        if ((rc = ember_kvm_vcpu_get_sregs(vcpu, &sregs)))
                goto kvm_fail;
        x86_vcpu_init_sregs(&boot->entry, &sregs);
        x86_vcpu_init_regs(&boot->entry, &regs);
        if ((rc = ember_kvm_vcpu_set_sregs(vcpu, &sregs)) ||
            (rc = ember_kvm_vcpu_set_regs(vcpu, &regs)))
                goto kvm_fail;
        return 0;
kvm_fail:
        return ember_errf(err, errlen, rc, "vCPU %u: %s", index, ember_kvm_vcpu_last_error(vcpu));
}
