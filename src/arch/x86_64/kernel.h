/* x86_64 kernel images: a bzImage (64-bit boot protocol >= 2.12) or an ELF64 vmlinux with a PVH
 * entry note. The image is untrusted input: probing validates every field against the file
 * length and never reads outside it; loading checks every guest range against RAM. */
#ifndef EMBER_ARCH_X86_64_KERNEL_H
#define EMBER_ARCH_X86_64_KERNEL_H

#include <stddef.h>
#include <stdint.h>

#include "core/gmem.h"

enum x86_kernel_kind {
        X86_KERNEL_BZIMAGE = 1, /* entered in 64-bit long mode with a zero page */
        X86_KERNEL_ELF_PVH = 2, /* entered in 32-bit protected mode with hvm_start_info */
};

/* Bytes of setup header a loader copies into boot_params (0x1f1 up to 0x26c). */
#define X86_SETUP_HEADER_OFFSET 0x1f1u
#define X86_SETUP_HEADER_MAX    0x7bu
#define X86_ELF_MAX_SEGMENTS    16u

struct x86_elf_segment {
        uint64_t file_offset, file_size; /* bytes copied from the image */
        uint64_t paddr, mem_size;        /* guest range; [file_size, mem_size) is zero-filled */
};

struct x86_kernel_info {
        enum x86_kernel_kind kind;
        uint64_t entry; /* guest physical entry point (64-bit for bzImage, 32-bit for PVH) */
        /* Guest physical range the kernel occupies until it has read its memory map:
         * bzImage: the loaded image and [runtime start, + init_size); ELF: all PT_LOAD ranges.
         * Nothing else may be placed in [mem_start, mem_end). */
        uint64_t mem_start, mem_end;
        /* Longest command line the kernel accepts, terminating NUL not included. */
        uint32_t cmdline_max;
        /* Highest address the initramfs may occupy (inclusive). */
        uint64_t initrd_addr_max;

        /* bzImage only */
        uint16_t protocol;      /* boot protocol version, e.g. 0x020f */
        uint64_t pm_offset;     /* protected-mode kernel: file offset ... */
        uint64_t pm_size;       /* ... and size, loaded at X86_BZIMAGE_LOAD_ADDR */
        uint32_t init_size;     /* linear memory needed from the runtime start */
        uint64_t runtime_start; /* where the kernel decompresses itself to */
        uint8_t setup_header[X86_SETUP_HEADER_MAX]; /* image bytes from 0x1f1 */
        uint32_t setup_header_len;

        /* ELF only */
        unsigned nsegments;
        struct x86_elf_segment segment[X86_ELF_MAX_SEGMENTS];
};

/* Detects and validates the image. `name` (may be NULL) is used in messages only, e.g.
 * "kernel image 'x': not a bzImage (no HdrS signature) and not an ELF file".
 * Returns 0, or -ENOEXEC / -EINVAL with a message in err. */
int x86_kernel_probe(const uint8_t *img, size_t len, const char *name, struct x86_kernel_info *out,
                     char *err, size_t errlen);

/* Copies the kernel into guest memory: the bzImage's protected-mode part to 1 MiB, or the ELF's
 * PT_LOAD segments to p_paddr with their bss zeroed. `img`/`len` must be what was probed.
 * Fails with -ENOMEM ("guest memory 32 MiB too small for kernel (40 MiB)") when
 * [mem_start, mem_end) is not RAM, -EINVAL on an inconsistent info. */
int x86_kernel_load(struct gmem *m, const uint8_t *img, size_t len,
                    const struct x86_kernel_info *ki, char *err, size_t errlen);

/* Where image bytes come from when the image is not in memory (a file: pread). `read` fills
 * dst with n bytes at offset off and returns 0, or -errno (-EIO for a short read). */
struct x86_image_src {
        void *ctx;
        int (*read)(void *ctx, uint64_t off, void *dst, uint64_t n);
        uint64_t len;
};

/* A vmlinux is mostly bytes the guest needs and the loader does not: rather than reading the
 * whole file, fill a zeroed buffer of src->len bytes (`sparse`, e.g. untouched anonymous memory)
 * with just what x86_kernel_probe looks at: the first X86_KERNEL_HEAD_BYTES (bzImage setup,
 * ELF header), and for ELF the program headers and every PT_NOTE. Probing `sparse` then
 * gives the same answer as probing the whole file. Returns 0 or -errno. */
#define X86_KERNEL_HEAD_BYTES (128u << 10)
int x86_kernel_read_headers(const struct x86_image_src *src, uint8_t *sparse);

/* How many bytes of the image x86_kernel_load(_from) copies into guest memory. */
uint64_t x86_kernel_load_bytes(const struct x86_kernel_info *ki);

/* x86_kernel_load reading from `src` straight into guest memory (no copy of the image). A
 * source that changed since probing fails with -EIO. */
int x86_kernel_load_from(struct gmem *m, const struct x86_image_src *src,
                         const struct x86_kernel_info *ki, char *err, size_t errlen);

#endif
