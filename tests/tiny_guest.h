/* Builds tiny PVH ELF guests for tests and benchmarks: an ELF64 file with one PT_LOAD segment
 * of 32-bit code at TINY_LOAD_ADDR and a PT_NOTE carrying XEN_ELFNOTE_PHYS32_ENTRY, which is
 * what ember (and QEMU) boot as a "PVH vmlinux". The code runs in 32-bit protected mode at
 * CPL0 with paging off, so it also runs on a software-emulated KVM. Header-only. */
#ifndef EMBER_TESTS_TINY_GUEST_H
#define EMBER_TESTS_TINY_GUEST_H

#include <elf.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ember/guest_abi.h"

#define TINY_LOAD_ADDR 0x200000u

struct tiny_code {
        uint8_t b[512];
        size_t n;
};

static inline void tiny_emit(struct tiny_code *c, const void *bytes, size_t n)
{
        if (c->n + n <= sizeof(c->b)) {
                memcpy(c->b + c->n, bytes, n);
                c->n += n;
        }
}
static inline void tiny_u32(struct tiny_code *c, uint32_t v)
{
        tiny_emit(c, &v, 4);
}
/* mov edx, imm32 ; mov eax, imm32 ; out dx, eax */
static inline void tiny_outl(struct tiny_code *c, uint16_t port, uint32_t val)
{
        tiny_emit(c, "\xba", 1);
        tiny_u32(c, port);
        tiny_emit(c, "\xb8", 1);
        tiny_u32(c, val);
        tiny_emit(c, "\xef", 1);
}
/* mov edx, imm32 ; mov al, imm8 ; out dx, al */
static inline void tiny_outb(struct tiny_code *c, uint16_t port, uint8_t val)
{
        tiny_emit(c, "\xba", 1);
        tiny_u32(c, port);
        tiny_emit(c, "\xb0", 1);
        tiny_emit(c, &val, 1);
        tiny_emit(c, "\xee", 1);
}
/* Reports `code` through ember's status port, which ends the VM. */
static inline void tiny_exit(struct tiny_code *c, uint8_t code)
{
        tiny_outl(c, EMBER_ABI_PORT, EMBER_ABI_WORD(EMBER_ABI_CMD_EXIT, code));
}
/* mov ecx, n ; 1: out dx, al ; loop 1b  (n port writes of al to dx, with dx/al already set) */
static inline void tiny_out_loop(struct tiny_code *c, uint16_t port, uint32_t n)
{
        tiny_emit(c, "\xba", 1);
        tiny_u32(c, port);
        tiny_emit(c, "\xb9", 1);
        tiny_u32(c, n);
        tiny_emit(c, "\xee\xe2\xfd", 3);
}
static inline void tiny_spin(struct tiny_code *c)
{
        tiny_emit(c, "\xeb\xfe", 2); /* jmp . */
}
static inline void tiny_hlt(struct tiny_code *c)
{
        tiny_emit(c, "\xfa\xf4", 2); /* cli; hlt */
}

/* or eax, EXIT word ; out to the status port: reports eax (which must hold 0..255) as the exit
 * code, ending the VM. */
static inline void tiny_exit_eax(struct tiny_code *c)
{
        tiny_emit(c, "\x0d", 1);
        tiny_u32(c, EMBER_ABI_WORD(EMBER_ABI_CMD_EXIT, 0));
        tiny_emit(c, "\xba", 1);
        tiny_u32(c, EMBER_ABI_PORT);
        tiny_emit(c, "\xef", 1);
}
/* movzx eax, byte [gpa], then tiny_exit_eax: the guest reports the byte at guest-physical
 * `gpa` (paging is off) as its exit code. */
static inline void tiny_exit_with_byte_at(struct tiny_code *c, uint32_t gpa)
{
        tiny_emit(c, "\x0f\xb6\x05", 3);
        tiny_u32(c, gpa);
        tiny_exit_eax(c);
}

/* Writes the ELF to a new temp file; returns its path (malloc'd) or NULL. The PT_LOAD segment
 * holds the code, then zeros up to `seg_size` bytes (at least the code's size; the file is
 * sparse), and its last byte is `tail` when seg_size is larger than the code. */
static inline char *tiny_guest_write_sized(const struct tiny_code *c, uint64_t seg_size,
                                           uint8_t tail)
{
        struct {
                Elf64_Ehdr eh;
                Elf64_Phdr ph[2];
                Elf64_Nhdr nh;
                char name[4];
                uint32_t entry;
        } __attribute__((packed)) f;
        if (seg_size < c->n)
                seg_size = c->n;
        memset(&f, 0, sizeof(f));
        memcpy(f.eh.e_ident, ELFMAG, SELFMAG);
        f.eh.e_ident[EI_CLASS] = ELFCLASS64;
        f.eh.e_ident[EI_DATA] = ELFDATA2LSB;
        f.eh.e_ident[EI_VERSION] = EV_CURRENT;
        f.eh.e_type = ET_EXEC;
        f.eh.e_machine = EM_X86_64;
        f.eh.e_version = EV_CURRENT;
        f.eh.e_entry = TINY_LOAD_ADDR;
        f.eh.e_phoff = offsetof(__typeof__(f), ph);
        f.eh.e_ehsize = sizeof(Elf64_Ehdr);
        f.eh.e_phentsize = sizeof(Elf64_Phdr);
        f.eh.e_phnum = 2;
        size_t code_off = 4096;
        f.ph[0].p_type = PT_LOAD;
        f.ph[0].p_flags = PF_R | PF_X;
        f.ph[0].p_offset = code_off;
        f.ph[0].p_vaddr = f.ph[0].p_paddr = TINY_LOAD_ADDR;
        f.ph[0].p_filesz = f.ph[0].p_memsz = seg_size;
        f.ph[0].p_align = 4096;
        f.ph[1].p_type = PT_NOTE;
        f.ph[1].p_flags = PF_R;
        f.ph[1].p_offset = offsetof(__typeof__(f), nh);
        f.ph[1].p_filesz = f.ph[1].p_memsz = sizeof(Elf64_Nhdr) + 4 + 4;
        f.ph[1].p_align = 4;
        f.nh.n_namesz = 4;
        f.nh.n_descsz = 4;
        f.nh.n_type = 18; /* XEN_ELFNOTE_PHYS32_ENTRY */
        memcpy(f.name, "Xen", 4);
        f.entry = TINY_LOAD_ADDR;

        char tmpl[] = "/tmp/ember-tiny-XXXXXX";
        int fd = mkstemp(tmpl);
        if (fd < 0)
                return NULL;
        int ok = ftruncate(fd, (off_t)(code_off + seg_size)) == 0 &&
                 pwrite(fd, &f, sizeof(f), 0) == (ssize_t)sizeof(f) &&
                 pwrite(fd, c->b, c->n, (off_t)code_off) == (ssize_t)c->n &&
                 (seg_size == c->n || pwrite(fd, &tail, 1, (off_t)(code_off + seg_size - 1)) == 1);
        close(fd);
        if (!ok) {
                unlink(tmpl);
                return NULL;
        }
        return strdup(tmpl);
}

static inline char *tiny_guest_write(const struct tiny_code *c)
{
        return tiny_guest_write_sized(c, c->n, 0);
}

#endif
