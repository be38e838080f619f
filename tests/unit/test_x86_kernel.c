/* x86 kernel image probing and loading: synthetic bzImage and PVH ELF images, every kind of
 * corruption we could think of, truncation at every length, random byte flips, and the real
 * guest kernel in build/guest when it has been built. */
#include "test.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arch/x86_64/kernel.h"
#include "arch/x86_64/layout.h"
#include "core/gmem.h"

#define MIB (1ull << 20)

static void put16(uint8_t *p, uint16_t v)
{
        p[0] = (uint8_t)v;
        p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
        for (int i = 0; i < 4; i++)
                p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
        for (int i = 0; i < 8; i++)
                p[i] = (uint8_t)(v >> (8 * i));
}

/* --- synthetic bzImage: 4 setup sectors + boot sector, then the protected-mode part ------ */

#define BZ_SETUP_SIZE (5 * 512)
#define BZ_PM_SIZE    (16 * 1024)
#define BZ_LEN        (BZ_SETUP_SIZE + BZ_PM_SIZE)

static uint8_t bz[BZ_LEN];

static void make_bzimage(void)
{
        memset(bz, 0, sizeof(bz));
        bz[0x1f1] = 4;                      /* setup_sects */
        put32(bz + 0x1f4, BZ_PM_SIZE / 16); /* syssize */
        put16(bz + 0x1fe, 0xaa55);
        bz[0x200] = 0xeb;
        bz[0x201] = 0x6a; /* header ends at 0x26c */
        memcpy(bz + 0x202, "HdrS", 4);
        put16(bz + 0x206, 0x020f);
        bz[0x211] = 0x01; /* LOADED_HIGH */
        put32(bz + 0x22c, 0x7fffffff);
        put32(bz + 0x230, 0x200000); /* kernel_alignment */
        bz[0x234] = 1;               /* relocatable */
        put16(bz + 0x236, 0x0003);   /* XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G */
        put32(bz + 0x238, 2047);
        put64(bz + 0x258, 0x1000000); /* pref_address */
        put32(bz + 0x260, 4 * MIB);   /* init_size */
        for (size_t i = 0; i < BZ_PM_SIZE; i++)
                bz[BZ_SETUP_SIZE + i] = (uint8_t)(i * 7 + 3);
}

/* --- synthetic PVH vmlinux: ehdr, 4 phdrs (LOAD text, LOAD data+bss, NOTE, GNU_STACK), notes,
 * segment data ------------------------------------------------------------------------------ */

#define ELF_LEN        (4096 + 8192 + 4096)
#define ELF_TEXT_OFF   4096
#define ELF_TEXT_SIZE  8192
#define ELF_DATA_OFF   (4096 + 8192)
#define ELF_DATA_SIZE  4096
#define ELF_DATA_MEMSZ (64 * 1024)
#define ELF_TEXT_PADDR 0x1000000ull
#define ELF_DATA_PADDR 0x1002000ull
#define ELF_ENTRY      0x1000040ull
#define ELF_NOTE_OFF   512
#define ELF_PHDR(i)    (elf + 64 + 56 * (i))

static uint8_t elf[ELF_LEN];

static void make_phdr(int i, uint32_t type, uint64_t off, uint64_t paddr, uint64_t filesz,
                      uint64_t memsz)
{
        uint8_t *ph = ELF_PHDR(i);
        put32(ph, type);
        put32(ph + 4, 5);
        put64(ph + 8, off);
        put64(ph + 16, 0xffffffff80000000ull + paddr);
        put64(ph + 24, paddr);
        put64(ph + 32, filesz);
        put64(ph + 40, memsz);
        put64(ph + 48, 0x1000);
}

static void make_elf(void)
{
        memset(elf, 0, sizeof(elf));
        memcpy(elf,
               "\x7f"
               "ELF",
               4);
        elf[4] = 2; /* ELFCLASS64 */
        elf[5] = 1; /* little endian */
        elf[6] = 1;
        put16(elf + 16, 2);  /* ET_EXEC */
        put16(elf + 18, 62); /* EM_X86_64 */
        put32(elf + 20, 1);
        put64(elf + 24, ELF_TEXT_PADDR);
        put64(elf + 32, 64); /* phoff */
        put16(elf + 52, 64);
        put16(elf + 54, 56);
        put16(elf + 56, 4);
        make_phdr(0, 1, ELF_TEXT_OFF, ELF_TEXT_PADDR, ELF_TEXT_SIZE, ELF_TEXT_SIZE);
        make_phdr(1, 1, ELF_DATA_OFF, ELF_DATA_PADDR, ELF_DATA_SIZE, ELF_DATA_MEMSZ);
        /* two notes: a GNU build id first, then Xen PHYS32_ENTRY with an 8-byte value */
        make_phdr(2, 4, ELF_NOTE_OFF, 0, 16 + 8 + 24, 16 + 8 + 24);
        make_phdr(3, 0x6474e551, 0, 0, 0, 0); /* PT_GNU_STACK: ignored */
        uint8_t *n = elf + ELF_NOTE_OFF;
        put32(n, 4);
        put32(n + 4, 8);
        put32(n + 8, 3);
        memcpy(n + 12, "GNU", 4);
        memcpy(n + 16, "buildid!", 8);
        n += 24;
        put32(n, 4);
        put32(n + 4, 8);
        put32(n + 8, 18);
        memcpy(n + 12, "Xen", 4);
        put64(n + 16, ELF_ENTRY);
        for (size_t i = 0; i < ELF_TEXT_SIZE; i++)
                elf[ELF_TEXT_OFF + i] = (uint8_t)(0x90 + i);
        for (size_t i = 0; i < ELF_DATA_SIZE; i++)
                elf[ELF_DATA_OFF + i] = (uint8_t)(0x11 * i + 1);
}

static int probe(const uint8_t *img, size_t len, struct x86_kernel_info *ki, char *err,
                 size_t errlen)
{
        err[0] = '\0';
        return x86_kernel_probe(img, len, "k", ki, err, errlen);
}

/* --- bzImage ---------------------------------------------------------------------------- */

static void t_bzimage_probe(void)
{
        make_bzimage();
        struct x86_kernel_info ki;
        char err[256];
        int r = probe(bz, BZ_LEN, &ki, err, sizeof(err));
        if (r)
                FAILF("probe: %d %s", r, err);
        CHECK_EQ(ki.kind, X86_KERNEL_BZIMAGE);
        CHECK_EQ(ki.protocol, 0x020f);
        CHECK_EQ(ki.pm_offset, BZ_SETUP_SIZE);
        CHECK_EQ(ki.pm_size, BZ_PM_SIZE);
        CHECK_EQ(ki.entry, 0x100200);
        CHECK_EQ(ki.cmdline_max, 2047);
        CHECK_EQ(ki.initrd_addr_max, 0x7fffffff);
        CHECK_EQ(ki.init_size, 4 * MIB);
        /* relocatable: align_up(1 MiB, 2 MiB) = 2 MiB, but never below pref_address 16 MiB */
        CHECK_EQ(ki.runtime_start, 0x1000000);
        CHECK_EQ(ki.mem_start, 0x100000);
        CHECK_EQ(ki.mem_end, 0x1000000 + 4 * MIB);
        CHECK_EQ(ki.setup_header_len, 0x26c - 0x1f1);
        CHECK(memcmp(ki.setup_header, bz + 0x1f1, ki.setup_header_len) == 0);
}

static void t_bzimage_runtime_start_rules(void)
{
        struct x86_kernel_info ki;
        char err[256];
        /* relocatable, low pref_address: align_up(1 MiB, 16 MiB) */
        make_bzimage();
        put32(bz + 0x230, 0x1000000);
        put64(bz + 0x258, 0);
        REQUIRE_EQ(probe(bz, BZ_LEN, &ki, err, sizeof(err)), 0);
        CHECK_EQ(ki.runtime_start, 0x1000000);
        /* relocatable, 4 KiB alignment, no pref: runs where loaded */
        put32(bz + 0x230, 0x1000);
        REQUIRE_EQ(probe(bz, BZ_LEN, &ki, err, sizeof(err)), 0);
        CHECK_EQ(ki.runtime_start, 0x100000);
        CHECK_EQ(ki.mem_end, 0x100000 + 4 * MIB);
        /* fixed kernel: pref_address */
        make_bzimage();
        bz[0x234] = 0;
        put64(bz + 0x258, 0x2000000);
        REQUIRE_EQ(probe(bz, BZ_LEN, &ki, err, sizeof(err)), 0);
        CHECK_EQ(ki.runtime_start, 0x2000000);
        CHECK_EQ(ki.mem_end, 0x2000000 + 4 * MIB);
        /* init_size smaller than the image: the image itself bounds the kernel's memory */
        make_bzimage();
        bz[0x234] = 0;
        put64(bz + 0x258, 0);
        put32(bz + 0x260, 4096);
        REQUIRE_EQ(probe(bz, BZ_LEN, &ki, err, sizeof(err)), 0);
        CHECK_EQ(ki.mem_end, 0x100000 + BZ_PM_SIZE);
        /* setup_sects 0 means 4 */
        make_bzimage();
        bz[0x1f1] = 0;
        REQUIRE_EQ(probe(bz, BZ_LEN, &ki, err, sizeof(err)), 0);
        CHECK_EQ(ki.pm_offset, BZ_SETUP_SIZE);
        /* a short header (protocol 2.12 ends after handover_offset): copied as far as it goes */
        make_bzimage();
        put16(bz + 0x206, 0x020c);
        bz[0x201] = 0x66;
        REQUIRE_EQ(probe(bz, BZ_LEN, &ki, err, sizeof(err)), 0);
        CHECK_EQ(ki.setup_header_len, 0x268 - 0x1f1);
        /* cmdline_size beyond ember's area is capped */
        make_bzimage();
        put32(bz + 0x238, 0xffffffff);
        REQUIRE_EQ(probe(bz, BZ_LEN, &ki, err, sizeof(err)), 0);
        CHECK_EQ(ki.cmdline_max, X86_CMDLINE_AREA - 1);
        /* initrd_addr_max 0: the documented default */
        make_bzimage();
        put32(bz + 0x22c, 0);
        REQUIRE_EQ(probe(bz, BZ_LEN, &ki, err, sizeof(err)), 0);
        CHECK_EQ(ki.initrd_addr_max, 0x37ffffff);
}

struct corruption {
        const char *what;
        size_t off;
        unsigned width; /* 1, 2, 4, 8 */
        uint64_t value;
        int rc;
        const char *msg; /* substring of the error */
};

static void write_value(uint8_t *p, unsigned width, uint64_t v)
{
        switch (width) {
        case 1:
                p[0] = (uint8_t)v;
                break;
        case 2:
                put16(p, (uint16_t)v);
                break;
        case 4:
                put32(p, (uint32_t)v);
                break;
        default:
                put64(p, v);
        }
}

static void t_bzimage_corrupt_headers(void)
{
        const struct corruption c[] = {
            {"no HdrS", 0x202, 4, 0x53726449, -ENOEXEC,
             "kernel image 'k': not a bzImage (no HdrS signature) and not an ELF file"},
            {"old protocol", 0x206, 2, 0x0206, -ENOEXEC,
             "kernel image 'k': bzImage boot protocol 2.06 is too old (need 2.12 for 64-bit "
             "entry)"},
            {"protocol 2.11", 0x206, 2, 0x020b, -ENOEXEC, "2.11 is too old"},
            {"boot flag", 0x1fe, 2, 0x1234, -EINVAL, "boot_flag 0x1234"},
            {"no jump", 0x200, 1, 0x90, -EINVAL, "no jump"},
            {"short header", 0x201, 1, 0x40, -EINVAL, "setup header too short"},
            {"negative jump", 0x201, 1, 0x80, -EINVAL, "setup header too short"},
            {"zImage", 0x211, 1, 0x00, -ENOEXEC, "zImage"},
            {"32-bit only", 0x236, 2, 0x0000, -ENOEXEC, "XLF_KERNEL_64"},
            {"syssize too big", 0x1f4, 4, BZ_PM_SIZE / 16 + 1, -EINVAL, "truncated or corrupt"},
            {"syssize huge", 0x1f4, 4, 0xffffffff, -EINVAL, "truncated or corrupt"},
            {"syssize 0", 0x1f4, 4, 0, -EINVAL, "truncated or corrupt"},
            {"setup beyond file", 0x1f1, 1, 200, -EINVAL, "setup is 102912 bytes"},
            {"cmdline_size 0", 0x238, 4, 0, -EINVAL, "cmdline_size 0"},
            {"init_size 0", 0x260, 4, 0, -EINVAL, "init_size 0"},
            {"alignment 0", 0x230, 4, 0, -EINVAL, "kernel_alignment 0x0"},
            {"alignment not pow2", 0x230, 4, 0x300000, -EINVAL, "not a power of two"},
            {"pref in gap", 0x258, 8, 0xe0000000ull, -EINVAL, "outside low RAM"},
            {"pref huge", 0x258, 8, 0xfffffffffffff000ull, -EINVAL, "outside low RAM"},
            {"init_size beyond gap", 0x260, 4, 0xf0000000u, -EINVAL, "outside low RAM"},
        };
        for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
                make_bzimage();
                write_value(bz + c[i].off, c[i].width, c[i].value);
                struct x86_kernel_info ki;
                char err[256];
                int r = probe(bz, BZ_LEN, &ki, err, sizeof(err));
                if (r != c[i].rc || !strstr(err, c[i].msg))
                        t_fail(__FILE__, __LINE__, "%s: rc %d (want %d), err \"%s\" (want \"%s\")",
                               c[i].what, r, c[i].rc, err, c[i].msg);
        }
        /* the loader is fixed: a fixed kernel with pref_address 0 below 1 MiB is refused */
        make_bzimage();
        bz[0x234] = 0;
        put64(bz + 0x258, 0x10000);
        struct x86_kernel_info ki;
        char err[256];
        CHECK_EQ(probe(bz, BZ_LEN, &ki, err, sizeof(err)), -EINVAL);
}

static void t_not_a_kernel(void)
{
        struct x86_kernel_info ki;
        char err[256];
        const uint8_t text[] = "#!/bin/sh\necho this is not a kernel\n";
        CHECK_EQ(probe(text, sizeof(text), &ki, err, sizeof(err)), -ENOEXEC);
        CHECK_STR(err, "kernel image 'k': not a bzImage (no HdrS signature) and not an ELF file");
        CHECK_EQ(probe(text, 0, &ki, err, sizeof(err)), -ENOEXEC);
        CHECK_EQ(x86_kernel_probe(text, 3, NULL, &ki, err, sizeof(err)), -ENOEXEC);
        CHECK(strstr(err, "(unnamed)") != NULL);
        /* no error buffer at all is fine */
        CHECK_EQ(x86_kernel_probe(text, 3, NULL, &ki, NULL, 0), -ENOEXEC);
        /* a gzip'd kernel (what /boot/vmlinuz is not, but users try) */
        static uint8_t zeros[4096];
        CHECK_EQ(probe(zeros, sizeof(zeros), &ki, err, sizeof(err)), -ENOEXEC);
}

/* Every truncation of a valid image is refused cleanly (run under ASan in check-asan). */
static void t_bzimage_every_truncation(void)
{
        make_bzimage();
        struct x86_kernel_info ki;
        char err[256];
        for (size_t len = 0; len < BZ_LEN; len++) {
                uint8_t *copy = malloc(len ? len : 1); /* exact size: ASan sees any overread */
                REQUIRE(copy != NULL);
                memcpy(copy, bz, len);
                int r = probe(copy, len, &ki, err, sizeof(err));
                free(copy);
                if (r == 0)
                        FAILF("truncated to %zu bytes but accepted", len);
                if (err[0] == '\0')
                        FAILF("truncated to %zu bytes: no message", len);
        }
}

/* --- ELF --------------------------------------------------------------------------------- */

static void t_elf_probe(void)
{
        make_elf();
        struct x86_kernel_info ki;
        char err[256];
        int r = probe(elf, ELF_LEN, &ki, err, sizeof(err));
        if (r)
                FAILF("probe: %d %s", r, err);
        CHECK_EQ(ki.kind, X86_KERNEL_ELF_PVH);
        CHECK_EQ(ki.entry, ELF_ENTRY);
        CHECK_EQ(ki.nsegments, 2);
        CHECK_EQ(ki.segment[0].paddr, ELF_TEXT_PADDR);
        CHECK_EQ(ki.segment[0].file_offset, ELF_TEXT_OFF);
        CHECK_EQ(ki.segment[1].mem_size, ELF_DATA_MEMSZ);
        CHECK_EQ(ki.mem_start, ELF_TEXT_PADDR);
        CHECK_EQ(ki.mem_end, ELF_DATA_PADDR + ELF_DATA_MEMSZ);
        CHECK_EQ(ki.cmdline_max, X86_PVH_CMDLINE_MAX);

        /* a 4-byte entry value is accepted too */
        uint8_t *n = elf + ELF_NOTE_OFF + 24;
        put32(n + 4, 4);
        put32(n + 16, (uint32_t)ELF_ENTRY + 4);
        put32(ELF_PHDR(2) + 32, 16 + 8 + 20);
        r = probe(elf, ELF_LEN, &ki, err, sizeof(err));
        if (r)
                FAILF("probe with a 4-byte note: %d %s", r, err);
        CHECK_EQ(ki.entry, ELF_ENTRY + 4);
}

static void t_elf_corrupt_headers(void)
{
        const struct corruption c[] = {
            {"class 32", 4, 1, 1, -ENOEXEC, "not 64-bit"},
            {"big endian", 5, 1, 2, -ENOEXEC, "not little-endian"},
            {"i386", 18, 2, 3, -ENOEXEC, "machine 3, not x86_64"},
            {"aarch64", 18, 2, 183, -ENOEXEC, "machine 183"},
            {"shared object", 16, 2, 3, -ENOEXEC, "not an executable"},
            {"phentsize", 54, 2, 32, -EINVAL, "program headers unusable"},
            {"phnum 0", 56, 2, 0, -EINVAL, "program headers unusable"},
            {"phnum huge", 56, 2, 0xffff, -EINVAL, "program headers unusable"},
            {"phoff beyond", 32, 8, ELF_LEN, -EINVAL, "outside the file"},
            {"phoff huge", 32, 8, 0xfffffffffffffff0ull, -EINVAL, "outside the file"},
            {"segment beyond file", 64 + 8, 8, ELF_LEN - 100, -EINVAL, "lies outside the file"},
            {"segment offset huge", 64 + 8, 8, ~0ull, -EINVAL, "lies outside the file"},
            {"filesz huge", 64 + 32, 8, ~0ull - 10, -EINVAL, "lies outside the file"},
            {"filesz > memsz", 64 + 56 + 40, 8, 100, -EINVAL, "file size > memory size"},
            {"below 1 MiB", 64 + 24, 8, 0x8000, -EINVAL, "outside the kernel's RAM window"},
            {"in the gap", 64 + 24, 8, 0xd0000000ull, -EINVAL, "outside the kernel's RAM window"},
            {"wraps", 64 + 56 + 24, 8, 0xfffffffffffff000ull, -EINVAL, "RAM window"},
            {"memsz beyond gap", 64 + 56 + 40, 8, 0xcf000000ull, -EINVAL, "RAM window"},
            {"no Xen note", ELF_NOTE_OFF + 24 + 12, 4, 0x006d6558, -ENOEXEC,
             "kernel image 'k': ELF kernel has no PVH entry note (CONFIG_PVH)"},
            {"other Xen note", ELF_NOTE_OFF + 24 + 8, 4, 17, -ENOEXEC, "no PVH entry note"},
            {"no note segment", 64 + 56 * 2, 4, 6, -ENOEXEC, "no PVH entry note"},
            {"entry desc 2 bytes", ELF_NOTE_OFF + 24 + 4, 4, 2, -EINVAL, "2-byte value"},
            {"note namesz huge", ELF_NOTE_OFF, 4, 0xfffffff0u, -EINVAL, "overruns"},
            {"note descsz huge", ELF_NOTE_OFF + 4, 4, 0xfffffff0u, -EINVAL, "overruns"},
            {"entry outside", ELF_NOTE_OFF + 24 + 16, 8, 0x2000000, -EINVAL,
             "PVH entry 0x2000000 is outside"},
            {"entry in bss", ELF_NOTE_OFF + 24 + 16, 8, ELF_DATA_PADDR + ELF_DATA_SIZE + 16,
             -EINVAL, "is outside"},
            {"no load segments", 64, 4, 0x6474e551, -EINVAL, "no loadable segments"},
        };
        for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
                make_elf();
                write_value(elf + c[i].off, c[i].width, c[i].value);
                if (strcmp(c[i].what, "no load segments") == 0)
                        put32(ELF_PHDR(1), 0x6474e551);
                struct x86_kernel_info ki;
                char err[256];
                int r = probe(elf, ELF_LEN, &ki, err, sizeof(err));
                if (r != c[i].rc || !strstr(err, c[i].msg))
                        t_fail(__FILE__, __LINE__, "%s: rc %d (want %d), err \"%s\" (want \"%s\")",
                               c[i].what, r, c[i].rc, err, c[i].msg);
        }
}

static void t_elf_too_many_segments(void)
{
        /* 20 small PT_LOADs from one file range */
        static uint8_t img[8192];
        make_elf();
        memcpy(img, elf, 64);
        put16(img + 56, 21);
        for (int i = 0; i < 20; i++) {
                uint8_t *ph = img + 64 + 56 * i;
                put32(ph, 1);
                put64(ph + 8, 4096);
                put64(ph + 24, 0x1000000 + 0x1000 * (uint64_t)i);
                put64(ph + 32, 16);
                put64(ph + 40, 16);
        }
        uint8_t *ph = img + 64 + 56 * 20;
        put32(ph, 4);
        put64(ph + 8, 2048);
        put64(ph + 32, 24);
        uint8_t *n = img + 2048;
        put32(n, 4);
        put32(n + 4, 8);
        put32(n + 8, 18);
        memcpy(n + 12, "Xen", 4);
        put64(n + 16, 0x1000000);
        struct x86_kernel_info ki;
        char err[256];
        CHECK_EQ(probe(img, sizeof(img), &ki, err, sizeof(err)), -EINVAL);
        CHECK(strstr(err, "more than 16 ELF load segments") != NULL);
}

static void t_elf_every_truncation(void)
{
        make_elf();
        struct x86_kernel_info ki;
        char err[256];
        for (size_t len = 0; len < ELF_LEN; len++) {
                uint8_t *copy = malloc(len ? len : 1);
                REQUIRE(copy != NULL);
                memcpy(copy, elf, len);
                int r = probe(copy, len, &ki, err, sizeof(err));
                free(copy);
                if (r == 0)
                        FAILF("truncated to %zu bytes but accepted", len);
        }
}

/* A fresh synthetic image (ELF on odd iterations, bzImage on even ones) with `flips` random
 * bytes of its headers replaced (bzImage: only the setup header, from 0x1f0). */
static uint8_t *corrupted_image(int iter, uint64_t *seed, int flips, size_t *len)
{
        int is_elf = iter & 1;
        uint8_t *img = is_elf ? elf : bz;
        *len = is_elf ? ELF_LEN : BZ_LEN;
        if (is_elf)
                make_elf();
        else
                make_bzimage();
        for (int f = 0; f < flips; f++) {
                *seed = *seed * 6364136223846793005ull + 1442695040888963407ull;
                size_t span = is_elf ? ELF_NOTE_OFF + 64 : 0x270;
                size_t at = (size_t)(*seed >> 33) % span;
                if (!is_elf && at < 0x1f0)
                        at += 0x1f0;
                img[at] = (uint8_t)(*seed >> 20);
        }
        return img;
}

/* Random byte flips in the headers of both formats: never a crash, and whatever is accepted
 * is internally consistent and loads (or is refused) without touching memory outside RAM. */
static void t_random_corruption(void)
{
        struct gmem m;
        REQUIRE_EQ(gmem_init(&m, 64 * MIB, X86_MMIO_GAP_START), 0);
        uint64_t seed = 0x9e3779b97f4a7c15ull;
        int accepted = 0;
        for (int iter = 0; iter < 20000; iter++) {
                size_t len;
                uint8_t *img = corrupted_image(iter, &seed, 1 + (int)(seed % 6), &len);
                struct x86_kernel_info ki;
                char err[256];
                if (probe(img, len, &ki, err, sizeof(err)) != 0) {
                        if (err[0] == '\0')
                                FAILF("iteration %d: refused without a message", iter);
                        continue;
                }
                accepted++;
                CHECK(ki.mem_start < ki.mem_end);
                CHECK(ki.mem_end <= X86_MMIO_GAP_START);
                CHECK(ki.cmdline_max > 0 && ki.cmdline_max < X86_CMDLINE_AREA);
                if (ki.kind == X86_KERNEL_BZIMAGE)
                        CHECK_EQ(ki.pm_offset + ki.pm_size, len);
                for (unsigned s = 0; s < ki.nsegments; s++)
                        CHECK(ki.segment[s].file_offset + ki.segment[s].file_size <= len);
                int r = x86_kernel_load(&m, img, len, &ki, err, sizeof(err));
                CHECK(r == 0 || r == -ENOMEM);
        }
        CHECK(accepted > 0);
        gmem_destroy(&m);
}

/* --- loading ----------------------------------------------------------------------------- */

/* The image is probed (it must be accepted) and a 64 MiB guest is made to load it into. */
static void probe_for_loading(const uint8_t *img, size_t len, struct x86_kernel_info *ki,
                              struct gmem *m)
{
        char err[256];
        REQUIRE_EQ(probe(img, len, ki, err, sizeof(err)), 0);
        REQUIRE_EQ(gmem_init(m, 64 * MIB, X86_MMIO_GAP_START), 0);
}

static void t_bzimage_load(void)
{
        make_bzimage();
        struct x86_kernel_info ki;
        struct gmem m;
        probe_for_loading(bz, BZ_LEN, &ki, &m);
        char err[256];
        REQUIRE_EQ(x86_kernel_load(&m, bz, BZ_LEN, &ki, err, sizeof(err)), 0);
        const uint8_t *p = gmem_ptr(&m, 0x100000, BZ_PM_SIZE);
        REQUIRE(p != NULL);
        CHECK(memcmp(p, bz + BZ_SETUP_SIZE, BZ_PM_SIZE) == 0);
        gmem_destroy(&m);

        /* 18 MiB of RAM cannot hold a kernel that decompresses to [16 MiB, 20 MiB) */
        REQUIRE_EQ(gmem_init(&m, 18 * MIB, X86_MMIO_GAP_START), 0);
        CHECK_EQ(x86_kernel_load(&m, bz, BZ_LEN, &ki, err, sizeof(err)), -ENOMEM);
        CHECK_STR(err, "guest memory 18 MiB too small for kernel (20 MiB)");
        gmem_destroy(&m);

        /* an info that does not match the image is refused */
        REQUIRE_EQ(gmem_init(&m, 64 * MIB, X86_MMIO_GAP_START), 0);
        CHECK_EQ(x86_kernel_load(&m, bz, BZ_LEN - 1, &ki, err, sizeof(err)), -EINVAL);
        gmem_destroy(&m);
}

static void t_elf_load(void)
{
        make_elf();
        struct x86_kernel_info ki;
        struct gmem m;
        probe_for_loading(elf, ELF_LEN, &ki, &m);
        char err[256];
        uint8_t *bss = gmem_ptr(&m, ELF_DATA_PADDR, ELF_DATA_MEMSZ);
        REQUIRE(bss != NULL);
        memset(bss, 0xee, ELF_DATA_MEMSZ); /* must come out zeroed */
        REQUIRE_EQ(x86_kernel_load(&m, elf, ELF_LEN, &ki, err, sizeof(err)), 0);
        const uint8_t *text = gmem_ptr(&m, ELF_TEXT_PADDR, ELF_TEXT_SIZE);
        REQUIRE(text != NULL);
        CHECK(memcmp(text, elf + ELF_TEXT_OFF, ELF_TEXT_SIZE) == 0);
        CHECK(memcmp(bss, elf + ELF_DATA_OFF, ELF_DATA_SIZE) == 0);
        int zero = 1;
        for (size_t i = ELF_DATA_SIZE; i < ELF_DATA_MEMSZ; i++)
                zero &= bss[i] == 0;
        CHECK(zero);
        gmem_destroy(&m);

        REQUIRE_EQ(gmem_init(&m, 16 * MIB, X86_MMIO_GAP_START), 0);
        CHECK_EQ(x86_kernel_load(&m, elf, ELF_LEN, &ki, err, sizeof(err)), -ENOMEM);
        CHECK_STR(err, "guest memory 16 MiB too small for kernel (17 MiB)");
        gmem_destroy(&m);
}

/* --- probing from headers only, loading from a source --------------------------------------- */

struct counting_src {
        const uint8_t *img;
        uint64_t len, bytes_read;
        int fail_at_or_after; /* offset from which reads fail with -EIO (a shrunken file), or -1 */
};

static int counting_read(void *ctx, uint64_t off, void *dst, uint64_t n)
{
        struct counting_src *c = ctx;
        if (off > c->len || n > c->len - off)
                return -EIO;
        if (c->fail_at_or_after >= 0 && off + n > (uint64_t)c->fail_at_or_after)
                return -EIO;
        memcpy(dst, c->img + off, n);
        c->bytes_read += n;
        return 0;
}

/* What x86_kernel_read_headers leaves in a zeroed buffer probes exactly like the whole image. */
static int probe_sparse(const uint8_t *img, size_t len, struct x86_kernel_info *ki,
                        uint64_t *bytes_read)
{
        uint8_t *sparse = calloc(1, len ? len : 1);
        REQUIRE(sparse != NULL);
        struct counting_src c = {img, len, 0, -1};
        struct x86_image_src src = {&c, counting_read, len};
        CHECK_EQ(x86_kernel_read_headers(&src, sparse), 0);
        char err[256];
        int rc = probe(sparse, len, ki, err, sizeof(err));
        free(sparse);
        if (bytes_read)
                *bytes_read = c.bytes_read;
        return rc;
}

static void t_headers_probe_like_the_whole_image(void)
{
        struct x86_kernel_info full, part;
        char err[256];
        make_elf();
        REQUIRE_EQ(probe_sparse(elf, ELF_LEN, &part, NULL), 0);
        REQUIRE_EQ(probe(elf, ELF_LEN, &full, err, sizeof(err)), 0);
        CHECK(memcmp(&full, &part, sizeof(full)) == 0);
        make_bzimage();
        REQUIRE_EQ(probe_sparse(bz, BZ_LEN, &part, NULL), 0);
        REQUIRE_EQ(probe(bz, BZ_LEN, &full, err, sizeof(err)), 0);
        CHECK(memcmp(&full, &part, sizeof(full)) == 0);

        /* corrupted and truncated headers: same verdict either way */
        uint64_t seed = 0x243f6a8885a308d3ull;
        for (int iter = 0; iter < 4000; iter++) {
                size_t len;
                uint8_t *img = corrupted_image(iter, &seed, 3, &len);
                if (iter % 7 == 0)
                        len = (size_t)(seed >> 40) % len;
                int a = probe(img, len, &full, err, sizeof(err));
                int b = probe_sparse(img, len, &part, NULL);
                CHECK_EQ(a, b);
                if (a == 0 && b == 0 && memcmp(&full, &part, sizeof(full)) != 0)
                        FAILF("iteration %d: probes agree on success but not on the result", iter);
        }
}

static void t_load_from_source(void)
{
        make_elf();
        struct x86_kernel_info ki;
        struct gmem m;
        probe_for_loading(elf, ELF_LEN, &ki, &m);
        char err[256];
        struct counting_src c = {elf, ELF_LEN, 0, -1};
        struct x86_image_src src = {&c, counting_read, ELF_LEN};
        REQUIRE_EQ(x86_kernel_load_from(&m, &src, &ki, err, sizeof(err)), 0);
        CHECK_EQ(c.bytes_read, ELF_TEXT_SIZE + ELF_DATA_SIZE); /* the segments, nothing else */
        const uint8_t *text = gmem_ptr(&m, ELF_TEXT_PADDR, ELF_TEXT_SIZE);
        CHECK(text && memcmp(text, elf + ELF_TEXT_OFF, ELF_TEXT_SIZE) == 0);

        /* the file shrank after probing: a clear error, not a partial kernel reported as fine */
        c = (struct counting_src){elf, ELF_LEN, 0, ELF_DATA_OFF};
        CHECK_EQ(x86_kernel_load_from(&m, &src, &ki, err, sizeof(err)), -EIO);
        CHECK(strstr(err, "file shorter than when it was probed") != NULL);
        gmem_destroy(&m);
}

/* --- the real guest kernel ----------------------------------------------------------------- */

static uint8_t *slurp(const char *path, size_t *len)
{
        int fd = open(path, O_RDONLY);
        if (fd < 0)
                return NULL;
        struct stat st;
        uint8_t *buf = NULL;
        if (fstat(fd, &st) == 0 && st.st_size > 0 && (buf = malloc((size_t)st.st_size))) {
                size_t got = 0;
                while (got < (size_t)st.st_size) {
                        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
                        if (n <= 0)
                                break;
                        got += (size_t)n;
                }
                *len = got;
        }
        close(fd);
        return buf;
}

static void t_real_guest_kernels(void)
{
        size_t bz_len = 0, elf_len = 0;
        uint8_t *rbz = slurp("build/guest/bzImage", &bz_len);
        uint8_t *relf = slurp("build/guest/vmlinux", &elf_len);
        if (!rbz && !relf)
                SKIP("build/guest/bzImage and vmlinux not built (make guest)");
        struct x86_kernel_info ki;
        char err[256];
        struct gmem m;
        REQUIRE_EQ(gmem_init(&m, 256 * MIB, X86_MMIO_GAP_START), 0);
        if (rbz) {
                int r = probe(rbz, bz_len, &ki, err, sizeof(err));
                if (r)
                        FAILF("bzImage: %s", err);
                CHECK_EQ(ki.kind, X86_KERNEL_BZIMAGE);
                CHECK(ki.protocol >= 0x020c);
                CHECK_EQ(ki.entry, 0x100200);
                CHECK(ki.cmdline_max >= 255);
                CHECK(ki.runtime_start >= 0x100000);
                CHECK(ki.mem_end > ki.runtime_start);
                CHECK_EQ(x86_kernel_load(&m, rbz, bz_len, &ki, err, sizeof(err)), 0);
                printf("info: bzImage: protocol %u.%02u, runs at 0x%llx, needs RAM to %llu MiB\n",
                       ki.protocol >> 8, ki.protocol & 0xff, (unsigned long long)ki.runtime_start,
                       (unsigned long long)((ki.mem_end + MIB - 1) / MIB));
        }
        if (relf) {
                int r = probe(relf, elf_len, &ki, err, sizeof(err));
                if (r)
                        FAILF("vmlinux: %s", err);
                CHECK_EQ(ki.kind, X86_KERNEL_ELF_PVH);
                CHECK(ki.entry >= ki.mem_start && ki.entry < ki.mem_end);
                CHECK(ki.entry < 0x100000000ull);
                CHECK(ki.nsegments >= 1);
                CHECK_EQ(x86_kernel_load(&m, relf, elf_len, &ki, err, sizeof(err)), 0);
                struct x86_kernel_info part;
                uint64_t read_bytes = 0;
                CHECK_EQ(probe_sparse(relf, elf_len, &part, &read_bytes), 0);
                CHECK(memcmp(&ki, &part, sizeof(ki)) == 0);
                CHECK(read_bytes < elf_len / 16); /* headers and notes only */
                printf("info: vmlinux: PVH entry 0x%llx, %u segments, RAM [0x%llx, 0x%llx)\n",
                       (unsigned long long)ki.entry, ki.nsegments, (unsigned long long)ki.mem_start,
                       (unsigned long long)ki.mem_end);
                /* every truncation of the real headers is refused (first 4 KiB + around the note)
                 */
                for (size_t len = 0; len < 4096; len += 7) {
                        uint8_t *copy = malloc(len ? len : 1);
                        REQUIRE(copy != NULL);
                        memcpy(copy, relf, len);
                        CHECK(probe(copy, len, &ki, err, sizeof(err)) != 0);
                        free(copy);
                }
        }
        gmem_destroy(&m);
        free(rbz);
        free(relf);
}

int main(void)
{
        T_RUN(t_bzimage_probe);
        T_RUN(t_bzimage_runtime_start_rules);
        T_RUN(t_bzimage_corrupt_headers);
        T_RUN(t_not_a_kernel);
        T_RUN(t_bzimage_every_truncation);
        T_RUN(t_elf_probe);
        T_RUN(t_elf_corrupt_headers);
        T_RUN(t_elf_too_many_segments);
        T_RUN(t_elf_every_truncation);
        T_RUN(t_random_corruption);
        T_RUN(t_bzimage_load);
        T_RUN(t_elf_load);
        T_RUN(t_headers_probe_like_the_whole_image);
        T_RUN(t_load_from_source);
        T_RUN(t_real_guest_kernels);
        return T_DONE();
}
