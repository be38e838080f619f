#include "arch/x86_64/kernel.h"

#include <errno.h>
#include <string.h>

#include "arch/x86_64/bytes.h"
#include "arch/x86_64/layout.h"

/* Setup header offsets (Documentation/arch/x86/boot.rst), from the start of the image. */
#define HDR_SETUP_SECTS      0x1f1
#define HDR_SYSSIZE          0x1f4
#define HDR_BOOT_FLAG        0x1fe
#define HDR_JUMP             0x200
#define HDR_MAGIC            0x202
#define HDR_VERSION          0x206
#define HDR_LOADFLAGS        0x211
#define HDR_INITRD_ADDR_MAX  0x22c
#define HDR_KERNEL_ALIGNMENT 0x230
#define HDR_RELOCATABLE      0x234
#define HDR_XLOADFLAGS       0x236
#define HDR_CMDLINE_SIZE     0x238
#define HDR_PREF_ADDRESS     0x258
#define HDR_INIT_SIZE        0x260
#define HDR_INIT_SIZE_END    0x264 /* the header must reach at least this far */

#define BOOT_FLAG_MAGIC      0xaa55
#define LOADFLAG_LOADED_HIGH 0x01
#define XLF_KERNEL_64        0x0001
#define PROTOCOL_MIN         0x020c /* 2.12: xloadflags, the 64-bit entry */
#define INITRD_MAX_DEFAULT   0x37ffffffull

/* ELF64 (only what a vmlinux needs). */
#define ELF_EHDR_SIZE            64
#define ELF_PHDR_SIZE            56
#define ELF_MAX_PHDRS            256
#define ELFCLASS64               2
#define ELFDATA2LSB              1
#define ET_EXEC                  2
#define EM_X86_64                62
#define PT_LOAD                  1
#define PT_NOTE                  4
#define XEN_ELFNOTE_PHYS32_ENTRY 18

static const char *image_name(const char *name)
{
        return name ? name : "(unnamed)";
}

static uint64_t align_up(uint64_t v, uint64_t a)
{
        return (v + a - 1) & ~(a - 1);
}

static int probe_bzimage(const uint8_t *img, size_t len, const char *name,
                         struct x86_kernel_info *ki, char *err, size_t errlen)
{
        const char *n = image_name(name);

        if (len < HDR_INIT_SIZE_END) {
                x86_errf(err, errlen,
                         "kernel image '%s': bzImage truncated (%zu bytes, the setup header alone "
                         "needs %u)",
                         n, len, HDR_INIT_SIZE_END);
                return -EINVAL;
        }
        uint16_t boot_flag = x86_le16(img + HDR_BOOT_FLAG);
        if (boot_flag != BOOT_FLAG_MAGIC) {
                x86_errf(err, errlen,
                         "kernel image '%s': bad bzImage boot_flag 0x%04x (expected 0xaa55)", n,
                         boot_flag);
                return -EINVAL;
        }
        uint16_t version = x86_le16(img + HDR_VERSION);
        if (version < PROTOCOL_MIN) {
                x86_errf(err, errlen,
                         "kernel image '%s': bzImage boot protocol %u.%02u is too old (need 2.12 "
                         "for 64-bit entry)",
                         n, version >> 8, version & 0xff);
                return -ENOEXEC;
        }
        /* "0xEB followed by a signed offset relative to byte 0x202": the end of the header. */
        if (img[HDR_JUMP] != 0xeb) {
                x86_errf(err, errlen,
                         "kernel image '%s': bzImage setup header has no jump at 0x200", n);
                return -EINVAL;
        }
        long hdr_end = HDR_MAGIC + (long)(int8_t)img[HDR_JUMP + 1];
        if (hdr_end < HDR_INIT_SIZE_END) {
                x86_errf(err, errlen,
                         "kernel image '%s': bzImage setup header too short (ends at 0x%lx, "
                         "protocol %u.%02u needs 0x%x)",
                         n, (unsigned long)hdr_end, version >> 8, version & 0xff,
                         HDR_INIT_SIZE_END);
                return -EINVAL;
        }
        unsigned setup_sects = img[HDR_SETUP_SECTS] ? img[HDR_SETUP_SECTS] : 4;
        uint64_t setup_size = (uint64_t)(setup_sects + 1) * 512;
        if (setup_size >= len) {
                x86_errf(
                    err, errlen,
                    "kernel image '%s': bzImage truncated (setup is %llu bytes, file is %zu bytes)",
                    n, (unsigned long long)setup_size, len);
                return -EINVAL;
        }
        if (!(img[HDR_LOADFLAGS] & LOADFLAG_LOADED_HIGH)) {
                x86_errf(err, errlen,
                         "kernel image '%s': zImage (loads below 1 MiB) is not supported, need a "
                         "bzImage",
                         n);
                return -ENOEXEC;
        }
        if (!(x86_le16(img + HDR_XLOADFLAGS) & XLF_KERNEL_64)) {
                x86_errf(err, errlen,
                         "kernel image '%s': bzImage has no 64-bit entry point (XLF_KERNEL_64 not "
                         "set: a 32-bit kernel?)",
                         n);
                return -ENOEXEC;
        }
        uint64_t pm_size = len - setup_size;
        uint64_t sys_bytes = (uint64_t)x86_le32(img + HDR_SYSSIZE) * 16;
        if (sys_bytes == 0 || sys_bytes > pm_size) {
                x86_errf(err, errlen,
                         "kernel image '%s': bzImage truncated or corrupt (header says %llu bytes "
                         "of kernel, file has %llu)",
                         n, (unsigned long long)sys_bytes, (unsigned long long)pm_size);
                return -EINVAL;
        }
        if (pm_size <= X86_BZIMAGE_ENTRY64_OFFSET) {
                x86_errf(err, errlen, "kernel image '%s': bzImage kernel too small (%llu bytes)", n,
                         (unsigned long long)pm_size);
                return -EINVAL;
        }
        uint32_t cmdline_size = x86_le32(img + HDR_CMDLINE_SIZE);
        if (cmdline_size == 0) {
                x86_errf(err, errlen, "kernel image '%s': bzImage header has cmdline_size 0", n);
                return -EINVAL;
        }
        uint32_t init_size = x86_le32(img + HDR_INIT_SIZE);
        if (init_size == 0) {
                x86_errf(err, errlen, "kernel image '%s': bzImage header has init_size 0", n);
                return -EINVAL;
        }

        /* Where the kernel decompresses itself: a relocatable kernel aligns its load address up
         * to kernel_alignment but never goes below its link address (pref_address); a fixed one
         * always runs at pref_address. */
        uint64_t pref = x86_le64(img + HDR_PREF_ADDRESS);
        uint64_t runtime;
        if (img[HDR_RELOCATABLE]) {
                uint32_t align = x86_le32(img + HDR_KERNEL_ALIGNMENT);
                if (align == 0 || (align & (align - 1)) != 0) {
                        x86_errf(err, errlen,
                                 "kernel image '%s': bzImage kernel_alignment 0x%x is not a power "
                                 "of two",
                                 n, align);
                        return -EINVAL;
                }
                runtime = align_up(X86_BZIMAGE_LOAD_ADDR, align);
                if (pref > runtime)
                        runtime = pref;
        } else {
                runtime = pref ? pref : X86_BZIMAGE_LOAD_ADDR;
        }
        if (runtime < X86_BZIMAGE_LOAD_ADDR || runtime >= X86_MMIO_GAP_START ||
            init_size > X86_MMIO_GAP_START - runtime) {
                x86_errf(err, errlen,
                         "kernel image '%s': bzImage wants to run at 0x%llx with init_size 0x%x, "
                         "outside low RAM (1 MiB to 0x%llx)",
                         n, (unsigned long long)runtime, init_size,
                         (unsigned long long)X86_MMIO_GAP_START);
                return -EINVAL;
        }
        if (pm_size > X86_MMIO_GAP_START - X86_BZIMAGE_LOAD_ADDR) {
                x86_errf(err, errlen, "kernel image '%s': bzImage too large (%llu bytes)", n,
                         (unsigned long long)pm_size);
                return -EINVAL;
        }

        ki->kind = X86_KERNEL_BZIMAGE;
        ki->protocol = version;
        ki->pm_offset = setup_size;
        ki->pm_size = pm_size;
        ki->init_size = init_size;
        ki->runtime_start = runtime;
        ki->entry = X86_BZIMAGE_LOAD_ADDR + X86_BZIMAGE_ENTRY64_OFFSET;
        ki->mem_start = X86_BZIMAGE_LOAD_ADDR;
        ki->mem_end = X86_BZIMAGE_LOAD_ADDR + pm_size;
        if (runtime + init_size > ki->mem_end)
                ki->mem_end = runtime + init_size;
        ki->cmdline_max =
            cmdline_size < X86_CMDLINE_AREA - 1 ? cmdline_size : (uint32_t)(X86_CMDLINE_AREA - 1);
        uint32_t initrd_max = x86_le32(img + HDR_INITRD_ADDR_MAX);
        ki->initrd_addr_max = initrd_max ? initrd_max : INITRD_MAX_DEFAULT;
        ki->setup_header_len = (uint32_t)hdr_end - X86_SETUP_HEADER_OFFSET;
        if (ki->setup_header_len > X86_SETUP_HEADER_MAX)
                ki->setup_header_len = X86_SETUP_HEADER_MAX;
        memcpy(ki->setup_header, img + X86_SETUP_HEADER_OFFSET, ki->setup_header_len);
        return 0;
}

/* Looks for the Xen PHYS32_ENTRY note in one PT_NOTE segment. Returns 1 and sets *entry when
 * found, 0 when not, -EINVAL on a malformed note. */
static int find_pvh_note(const uint8_t *notes, uint64_t size, uint64_t *entry, const char *n,
                         char *err, size_t errlen)
{
        uint64_t pos = 0;
        while (size - pos >= 12) {
                uint64_t namesz = x86_le32(notes + pos);
                uint64_t descsz = x86_le32(notes + pos + 4);
                uint32_t type = x86_le32(notes + pos + 8);
                uint64_t name_off = pos + 12;
                uint64_t desc_off = name_off + align_up(namesz, 4);
                /* All 64-bit: the 32-bit sizes cannot overflow these sums. */
                if (desc_off > size || descsz > size - desc_off) {
                        x86_errf(err, errlen,
                                 "kernel image '%s': ELF note at offset %llu overruns its segment",
                                 n, (unsigned long long)pos);
                        return -EINVAL;
                }
                if (namesz == 4 && memcmp(notes + name_off, "Xen", 4) == 0 &&
                    type == XEN_ELFNOTE_PHYS32_ENTRY) {
                        if (descsz == 4) {
                                *entry = x86_le32(notes + desc_off);
                        } else if (descsz == 8) {
                                *entry = x86_le64(notes + desc_off);
                        } else {
                                x86_errf(err, errlen,
                                         "kernel image '%s': PVH entry note has a %llu-byte value "
                                         "(expected 4 or 8)",
                                         n, (unsigned long long)descsz);
                                return -EINVAL;
                        }
                        return 1;
                }
                uint64_t next = desc_off + align_up(descsz, 4);
                if (next <= pos || next > size)
                        break;
                pos = next;
        }
        return 0;
}

static int probe_elf(const uint8_t *img, size_t len, const char *name, struct x86_kernel_info *ki,
                     char *err, size_t errlen)
{
        const char *n = image_name(name);

        if (len < ELF_EHDR_SIZE) {
                x86_errf(err, errlen, "kernel image '%s': ELF file truncated (%zu bytes)", n, len);
                return -EINVAL;
        }
        if (img[4] != ELFCLASS64) {
                x86_errf(err, errlen, "kernel image '%s': ELF kernel is not 64-bit (class %u)", n,
                         img[4]);
                return -ENOEXEC;
        }
        if (img[5] != ELFDATA2LSB) {
                x86_errf(err, errlen, "kernel image '%s': ELF kernel is not little-endian", n);
                return -ENOEXEC;
        }
        uint16_t type = x86_le16(img + 16), machine = x86_le16(img + 18);
        if (machine != EM_X86_64) {
                x86_errf(err, errlen,
                         "kernel image '%s': ELF kernel is for machine %u, not x86_64 (62)", n,
                         machine);
                return -ENOEXEC;
        }
        if (type != ET_EXEC) {
                x86_errf(err, errlen,
                         "kernel image '%s': ELF file type %u is not an executable (vmlinux)", n,
                         type);
                return -ENOEXEC;
        }
        uint64_t phoff = x86_le64(img + 32);
        uint16_t phentsize = x86_le16(img + 54), phnum = x86_le16(img + 56);
        if (phentsize != ELF_PHDR_SIZE || phnum == 0 || phnum > ELF_MAX_PHDRS) {
                x86_errf(err, errlen,
                         "kernel image '%s': ELF program headers unusable (%u entries of %u bytes)",
                         n, phnum, phentsize);
                return -EINVAL;
        }
        if (phoff > len || (uint64_t)phnum * ELF_PHDR_SIZE > len - phoff) {
                x86_errf(err, errlen, "kernel image '%s': ELF program headers lie outside the file",
                         n);
                return -EINVAL;
        }

        uint64_t entry = 0;
        int have_entry = 0;
        ki->nsegments = 0;
        ki->mem_start = UINT64_MAX;
        ki->mem_end = 0;
        for (unsigned i = 0; i < phnum; i++) {
                const uint8_t *ph = img + phoff + (uint64_t)i * ELF_PHDR_SIZE;
                uint32_t p_type = x86_le32(ph);
                uint64_t off = x86_le64(ph + 8), paddr = x86_le64(ph + 24);
                uint64_t filesz = x86_le64(ph + 32), memsz = x86_le64(ph + 40);
                if (p_type != PT_LOAD && p_type != PT_NOTE)
                        continue;
                if (off > len || filesz > len - off) {
                        x86_errf(err, errlen,
                                 "kernel image '%s': ELF segment %u (offset %llu, %llu bytes) lies "
                                 "outside the file (%zu bytes)",
                                 n, i, (unsigned long long)off, (unsigned long long)filesz, len);
                        return -EINVAL;
                }
                if (p_type == PT_NOTE) {
                        if (have_entry)
                                continue;
                        int r = find_pvh_note(img + off, filesz, &entry, n, err, errlen);
                        if (r < 0)
                                return r;
                        have_entry = r;
                        continue;
                }
                if (memsz == 0)
                        continue;
                if (filesz > memsz) {
                        x86_errf(err, errlen,
                                 "kernel image '%s': ELF segment %u has file size > memory size", n,
                                 i);
                        return -EINVAL;
                }
                if (paddr < X86_HIGH_MEM_START || paddr >= X86_MMIO_GAP_START ||
                    memsz > X86_MMIO_GAP_START - paddr) {
                        x86_errf(err, errlen,
                                 "kernel image '%s': ELF segment %u [0x%llx, +0x%llx) is outside "
                                 "the kernel's RAM window (1 MiB to 0x%llx)",
                                 n, i, (unsigned long long)paddr, (unsigned long long)memsz,
                                 (unsigned long long)X86_MMIO_GAP_START);
                        return -EINVAL;
                }
                if (ki->nsegments == X86_ELF_MAX_SEGMENTS) {
                        x86_errf(err, errlen, "kernel image '%s': more than %u ELF load segments",
                                 n, X86_ELF_MAX_SEGMENTS);
                        return -EINVAL;
                }
                ki->segment[ki->nsegments++] = (struct x86_elf_segment){
                    .file_offset = off, .file_size = filesz, .paddr = paddr, .mem_size = memsz};
                if (paddr < ki->mem_start)
                        ki->mem_start = paddr;
                if (paddr + memsz > ki->mem_end)
                        ki->mem_end = paddr + memsz;
        }
        if (!have_entry) {
                x86_errf(err, errlen,
                         "kernel image '%s': ELF kernel has no PVH entry note (CONFIG_PVH)", n);
                return -ENOEXEC;
        }
        if (ki->nsegments == 0) {
                x86_errf(err, errlen, "kernel image '%s': ELF kernel has no loadable segments", n);
                return -EINVAL;
        }
        int inside = 0;
        for (unsigned i = 0; i < ki->nsegments; i++) {
                const struct x86_elf_segment *s = &ki->segment[i];
                if (entry >= s->paddr && entry - s->paddr < s->file_size)
                        inside = 1;
        }
        if (!inside) {
                x86_errf(
                    err, errlen,
                    "kernel image '%s': PVH entry 0x%llx is outside the kernel's loaded segments",
                    n, (unsigned long long)entry);
                return -EINVAL;
        }
        ki->kind = X86_KERNEL_ELF_PVH;
        ki->entry = entry;
        ki->cmdline_max = X86_PVH_CMDLINE_MAX;
        /* boot_params.hdr.ramdisk_image, which PVH fills from the module list, is 32-bit. */
        ki->initrd_addr_max = 0xffffffffull;
        return 0;
}

int x86_kernel_probe(const uint8_t *img, size_t len, const char *name, struct x86_kernel_info *out,
                     char *err, size_t errlen)
{
        memset(out, 0, sizeof(*out));
        if (len >= 4 && memcmp(img,
                               "\x7f"
                               "ELF",
                               4) == 0)
                return probe_elf(img, len, name, out, err, errlen);
        if (len >= HDR_MAGIC + 4 && memcmp(img + HDR_MAGIC, "HdrS", 4) == 0)
                return probe_bzimage(img, len, name, out, err, errlen);
        x86_errf(err, errlen,
                 "kernel image '%s': not a bzImage (no HdrS signature) and not an ELF file",
                 image_name(name));
        return -ENOEXEC;
}

static int buffer_read(void *ctx, uint64_t off, void *dst, uint64_t n)
{
        memcpy(dst, (const uint8_t *)ctx + off, n);
        return 0;
}

int x86_kernel_load(struct gmem *m, const uint8_t *img, size_t len,
                    const struct x86_kernel_info *ki, char *err, size_t errlen)
{
        struct x86_image_src src = {(void *)img, buffer_read, len};
        return x86_kernel_load_from(m, &src, ki, err, errlen);
}

static int src_read(const struct x86_image_src *src, uint64_t off, void *dst, uint64_t n, char *err,
                    size_t errlen)
{
        if (n == 0)
                return 0;
        int rc = src->read(src->ctx, off, dst, n);
        if (rc)
                x86_errf(err, errlen, "kernel image: cannot read %llu bytes at offset %llu: %s",
                         (unsigned long long)n, (unsigned long long)off,
                         rc == -EIO ? "file shorter than when it was probed" : strerror(-rc));
        return rc;
}

uint64_t x86_kernel_load_bytes(const struct x86_kernel_info *ki)
{
        if (ki->kind == X86_KERNEL_BZIMAGE)
                return ki->pm_size;
        uint64_t n = 0;
        for (unsigned i = 0; i < ki->nsegments && i < X86_ELF_MAX_SEGMENTS; i++)
                n += ki->segment[i].file_size;
        return n;
}

int x86_kernel_load_from(struct gmem *m, const struct x86_image_src *src,
                         const struct x86_kernel_info *ki, char *err, size_t errlen)
{
        uint64_t len = src->len;
        if (ki->mem_start >= ki->mem_end ||
            !gmem_ptr(m, ki->mem_start, ki->mem_end - ki->mem_start)) {
                x86_errf(err, errlen, "guest memory %llu MiB too small for kernel (%llu MiB)",
                         (unsigned long long)(gmem_ram_size(m) >> 20), x86_mib_up(ki->mem_end));
                return -ENOMEM;
        }
        switch (ki->kind) {
        case X86_KERNEL_BZIMAGE: {
                if (ki->pm_offset > len || ki->pm_size != len - ki->pm_offset ||
                    X86_BZIMAGE_LOAD_ADDR + ki->pm_size > ki->mem_end) {
                        x86_errf(err, errlen, "kernel image does not match its probe result");
                        return -EINVAL;
                }
                uint8_t *dst = gmem_ptr(m, X86_BZIMAGE_LOAD_ADDR, ki->pm_size);
                if (!dst)
                        return -EFAULT;
                return src_read(src, ki->pm_offset, dst, ki->pm_size, err, errlen);
        }
        case X86_KERNEL_ELF_PVH:
                if (ki->nsegments > X86_ELF_MAX_SEGMENTS)
                        return -EINVAL;
                for (unsigned i = 0; i < ki->nsegments; i++) {
                        const struct x86_elf_segment *s = &ki->segment[i];
                        if (s->file_offset > len || s->file_size > len - s->file_offset ||
                            s->file_size > s->mem_size) {
                                x86_errf(err, errlen,
                                         "kernel image does not match its probe result");
                                return -EINVAL;
                        }
                        uint8_t *dst = gmem_ptr(m, s->paddr, s->mem_size);
                        if (!dst || s->paddr < ki->mem_start ||
                            s->paddr + s->mem_size > ki->mem_end) {
                                x86_errf(err, errlen,
                                         "guest memory %llu MiB too small for kernel (%llu MiB)",
                                         (unsigned long long)(gmem_ram_size(m) >> 20),
                                         x86_mib_up(ki->mem_end));
                                return -ENOMEM;
                        }
                        int rc = src_read(src, s->file_offset, dst, s->file_size, err, errlen);
                        if (rc)
                                return rc;
                        memset(dst + s->file_size, 0, s->mem_size - s->file_size);
                }
                return 0;
        }
        x86_errf(err, errlen, "unknown kernel kind %d", (int)ki->kind);
        return -EINVAL;
}

/* Reads [off, off + n) of the source into the same place of `sparse`, clipped to the source. */
static int sparse_fill(const struct x86_image_src *src, uint8_t *sparse, uint64_t off, uint64_t n)
{
        if (off >= src->len)
                return 0;
        if (n > src->len - off)
                n = src->len - off;
        return n ? src->read(src->ctx, off, sparse + off, n) : 0;
}

int x86_kernel_read_headers(const struct x86_image_src *src, uint8_t *sparse)
{
        int rc = sparse_fill(src, sparse, 0, X86_KERNEL_HEAD_BYTES);
        if (rc || src->len < ELF_EHDR_SIZE ||
            memcmp(sparse,
                   "\x7f"
                   "ELF",
                   4) != 0)
                return rc;
        uint64_t phoff = x86_le64(sparse + 32);
        uint16_t phentsize = x86_le16(sparse + 54), phnum = x86_le16(sparse + 56);
        if (phentsize != ELF_PHDR_SIZE || phnum == 0 || phnum > ELF_MAX_PHDRS)
                return 0; /* probing will say what is wrong */
        if ((rc = sparse_fill(src, sparse, phoff, (uint64_t)phnum * ELF_PHDR_SIZE)))
                return rc;
        if (phoff >= src->len || (uint64_t)phnum * ELF_PHDR_SIZE > src->len - phoff)
                return 0;
        for (unsigned i = 0; i < phnum; i++) {
                const uint8_t *ph = sparse + phoff + (uint64_t)i * ELF_PHDR_SIZE;
                if (x86_le32(ph) != PT_NOTE)
                        continue;
                if ((rc = sparse_fill(src, sparse, x86_le64(ph + 8), x86_le64(ph + 32))))
                        return rc;
        }
        return 0;
}
