/* libFuzzer target for the x86 kernel image parser: probe, then (if accepted) load and set up
 * the boot structures in a 64 MiB guest. The parser must refuse garbage with a message and
 * never read outside the image or write outside guest RAM.
 *
 *   fuzz/run.sh fuzz_kernel_image [seconds]    libFuzzer (clang)
 *   build/fuzz/fuzz_kernel_image [--random N] [FILE...]    replay / random inputs (any cc) */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86_64/boot.h"
#include "arch/x86_64/kernel.h"
#include "arch/x86_64/layout.h"
#include "core/gmem.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static struct gmem m;
        static int ready;
        if (!ready) {
                if (gmem_init(&m, 64u << 20, X86_MMIO_GAP_START) != 0)
                        abort();
                ready = 1;
        }
        /* An exact-size copy, so ASan catches the smallest overread. */
        uint8_t *img = malloc(size ? size : 1);
        if (!img)
                return 0;
        memcpy(img, data, size);
        struct x86_kernel_info ki;
        char err[256] = "";
        int r = x86_kernel_probe(img, size, "fuzz", &ki, err, sizeof(err));
        if (r != 0) {
                if (err[0] == '\0')
                        abort(); /* every refusal explains itself */
        } else if (ki.mem_start >= ki.mem_end || ki.mem_end > X86_MMIO_GAP_START) {
                abort();
        } else if (x86_kernel_load(&m, img, size, &ki, err, sizeof(err)) == 0) {
                static const uint8_t initrd[4096];
                struct x86_boot_cfg cfg = {.kernel = &ki,
                                           .cmdline = "console=ttyS0",
                                           .initramfs = initrd,
                                           .initramfs_len = sizeof(initrd),
                                           .ncpus = 2};
                struct x86_boot_entry e;
                if (x86_boot_setup(&m, &cfg, &e, err, sizeof(err)) == 0 &&
                    (e.initrd_addr < ki.mem_end || e.initrd_addr + e.initrd_size > (64u << 20)))
                        abort(); /* the initramfs overlaps the kernel or leaves RAM */
        }
        free(img);
        return 0;
}
