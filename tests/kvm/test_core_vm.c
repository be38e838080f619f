/* The VM core on /dev/kvm with tiny PVH guests, through the public ember API: the status port,
 * serial output, bus dispatch, vCPU threads, the exit handle, metrics, observers. */
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ember/ember.h"
#include "test.h"
#include "tiny_guest.h"

static int kvm_usable(void)
{
        int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
        if (fd < 0)
                return 0;
        close(fd);
        return 1;
}

#define NEED_KVM()                                                                                 \
        do {                                                                                       \
                if (!kvm_usable())                                                                 \
                        SKIP("/dev/kvm is not usable here");                                       \
        } while (0)

/* A builder for a tiny guest: 1 vCPU, 64 MiB, software KVM allowed, no root. */
static struct ember_builder *tiny_builder(const char *kernel, unsigned vcpus)
{
        struct ember_builder *b = ember_builder_new();
        REQUIRE(b);
        REQUIRE_EQ(ember_builder_machine(b, vcpus, 64), 0);
        REQUIRE_EQ(ember_builder_machine_allow_software_kvm(b, 1), 0);
        REQUIRE_EQ(ember_builder_kernel(b, kernel), 0);
        REQUIRE_EQ(ember_builder_exec(b, "/bin/true", NULL), 0);
        REQUIRE_EQ(ember_builder_console_fds(b, -1, -1, -1), 0);
        return b;
}

static struct ember_vm *tiny_vm(const struct tiny_code *code, unsigned vcpus, char **path_out)
{
        char *path = tiny_guest_write(code);
        REQUIRE(path);
        struct ember_builder *b = tiny_builder(path, vcpus);
        struct ember_vm *vm = NULL;
        int rc = ember_builder_build(b, &vm);
        if (rc)
                printf("build failed: %s: %s\n", ember_error_name(ember_builder_error_code(b)),
                       ember_builder_error(b));
        ember_builder_free(b);
        *path_out = path;
        REQUIRE_EQ(rc, 0);
        return vm;
}

static void t_status_port_exit_code(void)
{
        NEED_KVM();
        static const uint8_t codes[] = {0, 1, 42, 255};
        for (size_t i = 0; i < sizeof(codes); i++) {
                struct tiny_code c = {0};
                tiny_exit(&c, codes[i]);
                tiny_hlt(&c);
                char *path;
                struct ember_vm *vm = tiny_vm(&c, 1, &path);
                CHECK_EQ(ember_vm_run(vm), codes[i]);
                unlink(path);
                free(path);
        }
}

/* ud2 with ember's empty boot IDT escalates to a triple fault (or, on a software KVM, an
 * emulation failure): either way the VM ends without a status. */
static void t_crash_without_status_is_guest_failure(void)
{
        NEED_KVM();
        struct tiny_code c = {0};
        tiny_emit(&c, "\x0f\x0b", 2);
        char *path;
        struct ember_vm *vm = tiny_vm(&c, 1, &path);
        REQUIRE_EQ(ember_vm_start(vm), 0);
        CHECK_EQ(ember_vm_wait(vm), EMBER_EXIT_GUEST_FAILED);
        printf("  (ended with: %s)\n", ember_vm_error(vm));
        CHECK(ember_vm_error(vm)[0] != 0);
        ember_vm_free(vm);
        unlink(path);
        free(path);
}

static void t_i8042_reset_stops_vm(void)
{
        NEED_KVM();
        struct tiny_code c = {0};
        tiny_outb(&c, 0x64, 0xfe);
        tiny_spin(&c);
        char *path;
        struct ember_vm *vm = tiny_vm(&c, 1, &path);
        REQUIRE_EQ(ember_vm_start(vm), 0);
        CHECK_EQ(ember_vm_wait(vm), EMBER_EXIT_GUEST_FAILED);
        CHECK(strstr(ember_vm_error(vm), "i8042") != NULL);
        ember_vm_free(vm);
        unlink(path);
        free(path);
}

/* A new empty file from a mkstemp template (the template becomes its path). */
static void temp_file(char *tmpl)
{
        int fd = mkstemp(tmpl);
        REQUIRE(fd >= 0);
        close(fd);
}

/* Builds the tiny guest at `kernel` with one path option set (kernel log, saved initramfs),
 * runs it and returns its exit code. */
static int run_with_path_option(const char *kernel,
                                int (*option)(struct ember_builder *, const char *),
                                const char *path)
{
        struct ember_builder *b = tiny_builder(kernel, 1);
        REQUIRE_EQ(option(b, path), 0);
        struct ember_vm *vm = NULL;
        REQUIRE_EQ(ember_builder_build(b, &vm), 0);
        ember_builder_free(b);
        return ember_vm_run(vm);
}

static void t_serial_kernel_log(void)
{
        NEED_KVM();
        struct tiny_code c = {0};
        const char *msg = "hello from COM1\n";
        for (const char *p = msg; *p; p++)
                tiny_outb(&c, 0x3f8, (uint8_t)*p);
        tiny_exit(&c, 3);
        char *path = tiny_guest_write(&c);
        REQUIRE(path);
        char log[] = "/tmp/ember-serial-XXXXXX";
        temp_file(log);
        CHECK_EQ(run_with_path_option(path, ember_builder_kernel_log, log), 3);
        char buf[64] = {0};
        int fd = open(log, O_RDONLY);
        REQUIRE(fd >= 0);
        CHECK(read(fd, buf, sizeof(buf) - 1) > 0);
        close(fd);
        CHECK_STR(buf, msg);
        unlink(log);
        unlink(path);
        free(path);
}

/* Port and MMIO accesses to addresses no device claims do not disturb the guest, and reads
 * return all-ones (checked by the guest, which reports what it read as its exit code). */
static void t_unclaimed_io_reads_all_ones(void)
{
        NEED_KVM();
        struct tiny_code c = {0};
        /* mov edx, 0x2f0 ; in al, dx ; and al, 0x7f ; movzx eax, al ; or eax, EXIT<<24 ;
         * mov edx, port ; out dx, eax */
        tiny_emit(&c, "\xba\xf0\x02\x00\x00\xec\x24\x7f\x0f\xb6\xc0", 11);
        tiny_emit(&c, "\x0d", 1);
        tiny_u32(&c, EMBER_ABI_CMD_EXIT << EMBER_ABI_CMD_SHIFT);
        tiny_emit(&c, "\xba", 1);
        tiny_u32(&c, EMBER_ABI_PORT);
        tiny_emit(&c, "\xef", 1);
        tiny_hlt(&c);
        char *path;
        struct ember_vm *vm = tiny_vm(&c, 1, &path);
        CHECK_EQ(ember_vm_run(vm), 0x7f);
        unlink(path);
        free(path);
}

static void t_status_port_reads_magic(void)
{
        NEED_KVM();
        struct tiny_code c = {0};
        /* mov edx, port ; in eax, dx ; cmp eax, MAGIC ; jne +N(fail) ; exit 9 ; fail: exit 8 */
        tiny_emit(&c, "\xba", 1);
        tiny_u32(&c, EMBER_ABI_PORT);
        tiny_emit(&c, "\xed\x3d", 2);
        tiny_u32(&c, EMBER_ABI_PORT_MAGIC);
        struct tiny_code ok = {0};
        tiny_exit(&ok, 9);
        uint8_t jne[2] = {0x75, (uint8_t)ok.n};
        tiny_emit(&c, jne, 2);
        tiny_emit(&c, ok.b, ok.n);
        tiny_exit(&c, 8);
        char *path;
        struct ember_vm *vm = tiny_vm(&c, 1, &path);
        CHECK_EQ(ember_vm_run(vm), 9);
        unlink(path);
        free(path);
}

struct trigger_arg {
        struct ember_exit_handle h;
        int delay_ms;
};

static void *trigger_later(void *p)
{
        struct trigger_arg *a = p;
        struct timespec ts = {a->delay_ms / 1000, (a->delay_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        ember_exit_handle_trigger(a->h);
        ember_exit_handle_trigger(a->h); /* idempotent */
        return NULL;
}

static void t_exit_handle_stops_spinning_guest(void)
{
        NEED_KVM();
        struct tiny_code c = {0};
        tiny_spin(&c);
        char *path;
        struct ember_vm *vm = tiny_vm(&c, 2, &path);
        struct trigger_arg a = {.delay_ms = 200};
        REQUIRE_EQ(ember_vm_exit_handle(vm, &a.h), 0);
        atomic_int *code = ember_vm_exit_code(vm);
        CHECK_EQ(atomic_load(code), EMBER_EXIT_CODE_UNSET);
        pthread_t t;
        REQUIRE_EQ(pthread_create(&t, NULL, trigger_later, &a), 0);
        REQUIRE_EQ(ember_vm_start(vm), 0);
        CHECK_EQ(ember_vm_wait(vm), EMBER_EXIT_STOPPED);
        CHECK_EQ(atomic_load(code), EMBER_EXIT_STOPPED);
        pthread_join(t, NULL);
        ember_vm_free(vm);
        /* The handle outlives the VM: triggering now is harmless. */
        CHECK_EQ(ember_exit_handle_trigger(a.h), 0);
        ember_exit_handle_release(&a.h);
        CHECK_EQ(a.h.fd, -1);
        unlink(path);
        free(path);
}

/* A released copy of a handle whose fd number now belongs to another file refuses to write to
 * it, and releasing it does not close that file. */
static void t_released_handle_never_writes_elsewhere(void)
{
        NEED_KVM();
        struct tiny_code c = {0};
        tiny_spin(&c);
        char *path;
        struct ember_vm *vm = tiny_vm(&c, 1, &path);
        struct ember_exit_handle h, copy;
        REQUIRE_EQ(ember_vm_exit_handle(vm, &h), 0);
        copy = h;
        ember_exit_handle_release(&h);
        char tmpl[] = "/tmp/ember-handle-XXXXXX";
        int f = mkstemp(tmpl);
        REQUIRE(f >= 0);
        unlink(tmpl);
        if (f != copy.fd) {
                REQUIRE_EQ(dup2(f, copy.fd), copy.fd);
                close(f);
        }
        int reused = copy.fd; /* now the file's */
        CHECK_EQ(ember_exit_handle_trigger(copy), -EBADF);
        struct stat st;
        REQUIRE_EQ(fstat(reused, &st), 0);
        CHECK_EQ(st.st_size, 0); /* nothing was written into the file */
        ember_exit_handle_release(&copy);
        CHECK(fcntl(reused, F_GETFD) >= 0); /* and it was not closed */
        close(reused);
        ember_vm_free(vm);
        unlink(path);
        free(path);
}

/* ember_vm_run on a VM that is already running refuses without freeing it: the VM and its error
 * stay usable (before, it freed a VM it had not started, under the caller's feet). */
static void t_run_on_started_vm_keeps_it(void)
{
        NEED_KVM();
        struct tiny_code c = {0};
        tiny_spin(&c);
        char *path;
        struct ember_vm *vm = tiny_vm(&c, 1, &path);
        struct ember_exit_handle h;
        REQUIRE_EQ(ember_vm_exit_handle(vm, &h), 0);
        REQUIRE_EQ(ember_vm_start(vm), 0);
        CHECK_EQ(ember_vm_run(vm), -EBUSY);
        CHECK(strstr(ember_vm_error(vm), "already started") != NULL);
        CHECK_EQ(ember_exit_handle_trigger(h), 0);
        CHECK_EQ(ember_vm_wait(vm), EMBER_EXIT_STOPPED);
        ember_vm_free(vm);
        ember_exit_handle_release(&h);
        unlink(path);
        free(path);
}

static void t_metrics_count_exits(void)
{
        NEED_KVM();
        struct tiny_code c = {0};
        tiny_out_loop(&c, 0x2f0, 100);
        tiny_exit(&c, 0);
        char *path;
        struct ember_vm *vm = tiny_vm(&c, 1, &path);
        struct ember_metrics *m = ember_vm_metrics(vm);
        REQUIRE(m);
        struct ember_metrics_sample s;
        REQUIRE_EQ(ember_metrics_sample(m, &s), 0);
        CHECK_EQ(s.running, 0);
        CHECK_EQ(s.exits_total, 0);
        CHECK_EQ(s.memory_bytes, 64u << 20);
        CHECK_EQ(ember_vm_run(vm), 0);
        /* The VM is gone; the handle still reports its final values. */
        REQUIRE_EQ(ember_metrics_sample(m, &s), 0);
        CHECK_EQ(s.running, 0);
        CHECK(s.exits_io >= 101);
        CHECK(s.exits_total >= s.exits_io);
        CHECK(s.uptime_ns > 0);
        CHECK(s.vcpu_time_ns > 0);
        CHECK_EQ(s.host_resident_bytes, 0);
        ember_metrics_release(m);
        unlink(path);
        free(path);
}

static void t_metrics_while_running(void)
{
        NEED_KVM();
        struct tiny_code c = {0};
        tiny_spin(&c);
        char *path;
        struct ember_vm *vm = tiny_vm(&c, 1, &path);
        struct ember_metrics *m = ember_vm_metrics(vm);
        REQUIRE_EQ(ember_vm_start(vm), 0);
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL);
        struct ember_metrics_sample s;
        REQUIRE_EQ(ember_metrics_sample(m, &s), 0);
        CHECK_EQ(s.running, 1);
        CHECK(s.uptime_ns > 0);
        CHECK(s.host_resident_bytes > 0); /* the kernel image and boot structures were written */
        CHECK(s.host_resident_bytes <= s.memory_bytes);
        struct ember_exit_handle h;
        REQUIRE_EQ(ember_vm_exit_handle(vm, &h), 0);
        ember_exit_handle_trigger(h);
        ember_exit_handle_release(&h);
        CHECK_EQ(ember_vm_wait(vm), EMBER_EXIT_STOPPED);
        ember_vm_free(vm);
        ember_metrics_release(m);
        unlink(path);
        free(path);
}

static int observed[4], nobserved;
static void observer(int code, void *user)
{
        if (nobserved < 4)
                observed[nobserved++] = code * 10 + (int)(intptr_t)user;
}

static void t_observers_run_in_order_after_code_set(void)
{
        NEED_KVM();
        struct tiny_code c = {0};
        tiny_exit(&c, 5);
        char *path = tiny_guest_write(&c);
        REQUIRE(path);
        struct ember_builder *b = tiny_builder(path, 1);
        REQUIRE_EQ(ember_builder_on_exit(b, observer, (void *)1), 0);
        REQUIRE_EQ(ember_builder_on_exit(b, observer, (void *)2), 0);
        struct ember_vm *vm = NULL;
        REQUIRE_EQ(ember_builder_build(b, &vm), 0);
        ember_builder_free(b);
        nobserved = 0;
        CHECK_EQ(ember_vm_run(vm), 5);
        CHECK_EQ(nobserved, 2);
        CHECK_EQ(observed[0], 51);
        CHECK_EQ(observed[1], 52);
        unlink(path);
        free(path);
}

/* Several VMs at once from one thread, each with its own code. */
static void t_concurrent_vms(void)
{
        NEED_KVM();
        struct ember_vm *vm[3];
        char *path[3];
        for (int i = 0; i < 3; i++) {
                struct tiny_code c = {0};
                tiny_exit(&c, (uint8_t)(10 + i));
                vm[i] = tiny_vm(&c, 1, &path[i]);
        }
        for (int i = 0; i < 3; i++)
                REQUIRE_EQ(ember_vm_start(vm[i]), 0);
        for (int i = 0; i < 3; i++) {
                CHECK_EQ(ember_vm_wait(vm[i]), 10 + i);
                ember_vm_free(vm[i]);
                unlink(path[i]);
                free(path[i]);
        }
}

static int enter_pipe = -1;
static void enter_observer(int code, void *user)
{
        char msg[32];
        int n = snprintf(msg, sizeof(msg), "observed %d", code);
        if (write(enter_pipe, msg, (size_t)n) != n)
                _exit(99);
}

/* ember_vm_enter never returns on success: the observers run, then the process ends with the
 * guest's code. Run in a child so the test process survives. */
static void t_enter_exits_process_with_code(void)
{
        NEED_KVM();
        struct tiny_code c = {0};
        tiny_exit(&c, 42);
        char *path = tiny_guest_write(&c);
        REQUIRE(path);
        int p[2];
        REQUIRE_EQ(pipe(p), 0);
        fflush(stdout);
        pid_t pid = fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
                close(p[0]);
                enter_pipe = p[1];
                struct ember_builder *b = ember_builder_new();
                ember_builder_machine(b, 1, 64);
                ember_builder_machine_allow_software_kvm(b, 1);
                ember_builder_kernel(b, path);
                ember_builder_exec(b, "/bin/true", NULL);
                ember_builder_console_fds(b, -1, -1, -1);
                ember_builder_on_exit(b, enter_observer, NULL);
                struct ember_vm *vm = NULL;
                if (ember_builder_build(b, &vm) != 0)
                        _exit(97);
                ember_builder_free(b);
                ember_vm_enter(vm);
                _exit(98); /* only reached if enter failed before the guest started */
        }
        close(p[1]);
        int st;
        REQUIRE_EQ(waitpid(pid, &st, 0), pid);
        REQUIRE(WIFEXITED(st));
        CHECK_EQ(WEXITSTATUS(st), 42);
        char buf[64] = {0};
        CHECK(read(p[0], buf, sizeof(buf) - 1) > 0);
        CHECK_STR(buf, "observed 42");
        close(p[0]);
        unlink(path);
        free(path);
}

/* Builds and runs `n` VMs of the kernel at `path` one after another: each exits with
 * `code`, and the process has as many open fds afterwards as before. */
static void run_in_turn_no_fd_growth(const char *path, unsigned vcpus, int n, int code)
{
        int before = t_count_open_fds();
        for (int i = 0; i < n; i++) {
                struct ember_builder *b = tiny_builder(path, vcpus);
                struct ember_vm *vm = NULL;
                REQUIRE_EQ(ember_builder_build(b, &vm), 0);
                ember_builder_free(b);
                CHECK_EQ(ember_vm_run(vm), code);
        }
        CHECK_EQ(t_count_open_fds(), before);
}

static void t_many_vms_no_fd_leak(void)
{
        NEED_KVM();
        struct tiny_code c = {0};
        tiny_exit(&c, 0);
        char *path = tiny_guest_write(&c);
        REQUIRE(path);
        run_in_turn_no_fd_growth(path, 2, 10, 0);
        unlink(path);
        free(path);
}

/* A kernel of 1 MiB or more is copied into guest memory on a helper thread while the rest of
 * the VM is built: the guest reports the last byte of its 6 MiB segment, so all of it arrived,
 * and nothing (fd, thread) is left behind. */
static void t_big_kernel_copied_while_building(void)
{
        NEED_KVM();
        struct tiny_code c = {0};
        const uint64_t seg = 6u << 20;
        tiny_exit_with_byte_at(&c, TINY_LOAD_ADDR + (uint32_t)seg - 1);
        tiny_hlt(&c);
        char *path = tiny_guest_write_sized(&c, seg, 0x5a);
        REQUIRE(path);
        run_in_turn_no_fd_growth(path, 1, 3, 0x5a);
        unlink(path);
        free(path);
}

/* A kernel that does not fit in guest memory fails the build with a memory error naming both
 * sizes; the copy that was under way is waited for, and nothing is left open. */
static void t_kernel_larger_than_memory(void)
{
        NEED_KVM();
        struct tiny_code c = {0};
        tiny_exit(&c, 0);
        char *path = tiny_guest_write_sized(&c, 80u << 20, 1);
        REQUIRE(path);
        int before = t_count_open_fds();
        struct ember_builder *b = tiny_builder(path, 1); /* 64 MiB */
        struct ember_vm *vm = NULL;
        CHECK(ember_builder_build(b, &vm) < 0);
        CHECK(vm == NULL);
        CHECK_EQ(ember_builder_error_code(b), EMBER_ERR_MEMORY);
        CHECK(strstr(ember_builder_error(b), "guest memory 64 MiB too small for kernel") != NULL);
        ember_builder_free(b);
        CHECK_EQ(t_count_open_fds(), before);
        unlink(path);
        free(path);
}

/* The IOAPIC's select register becomes a coalesced zone at the guest's first select. The guest
 * selects the ID register (that write exits and binds the zone), then the arbitration and the
 * version registers, then reads the window. The read must see the last select (the queued
 * writes are replayed in order before the read is handled), so the guest reports version 0x11;
 * and the two later selects did not exit, so the VM saw two MMIO exits, not four. */
static void t_coalesced_ioapic_select_replayed_in_order(void)
{
        NEED_KVM();
        struct tiny_code c = {0};
        static const uint32_t regs[] = {0x00, 0x02, 0x01};
        for (unsigned i = 0; i < 3; i++) {
                tiny_emit(&c, "\xc7\x05", 2); /* mov dword [IOREGSEL], reg */
                tiny_u32(&c, 0xfec00000u);
                tiny_u32(&c, regs[i]);
        }
        tiny_emit(&c, "\xa1", 1); /* mov eax, [IOWIN] */
        tiny_u32(&c, 0xfec00010u);
        tiny_emit(&c, "\x25", 1); /* and eax, 0xff */
        tiny_u32(&c, 0xff);
        tiny_exit_eax(&c);
        tiny_hlt(&c);
        char *path;
        struct ember_vm *vm = tiny_vm(&c, 1, &path);
        struct ember_metrics *m = ember_vm_metrics(vm);
        REQUIRE(m);
        CHECK_EQ(ember_vm_run(vm), 0x11);
        struct ember_metrics_sample s;
        REQUIRE_EQ(ember_metrics_sample(m, &s), 0);
        CHECK_EQ(s.exits_mmio, 2);
        ember_metrics_release(m);
        unlink(path);
        free(path);
}

/* Walks a newc cpio: every header well formed, and the names wanted are present (in order
 * given, anywhere). Returns how many of them were found, or -1 if the archive is malformed. */
static int cpio_find(const uint8_t *p, size_t len, const char *const *names, int nnames)
{
        size_t off = 0;
        int found = 0;
        for (;;) {
                if (off + 110 > len || memcmp(p + off, "070701", 6) != 0)
                        return -1;
                char field[9] = {0};
                memcpy(field, p + off + 54, 8);
                size_t filesize = strtoul(field, NULL, 16);
                memcpy(field, p + off + 94, 8);
                size_t namesize = strtoul(field, NULL, 16);
                if (namesize == 0 || off + 110 + namesize > len)
                        return -1;
                const char *name = (const char *)p + off + 110;
                if (name[namesize - 1] != 0)
                        return -1;
                if (!strcmp(name, "TRAILER!!!"))
                        return found;
                for (int i = 0; i < nnames; i++)
                        if (!strcmp(name, names[i]))
                                found++;
                off = (off + 110 + namesize + 3) & ~(size_t)3;
                off = (off + filesize + 3) & ~(size_t)3;
        }
}

/* ember_builder_kernel_save_initramfs: the file is the initramfs ember boots (a newc cpio with
 * ember-init and the exec configuration), and an unwritable path fails the build, named. */
static void t_save_initramfs(void)
{
        NEED_KVM();
        struct tiny_code c = {0};
        tiny_exit(&c, 7);
        char *path = tiny_guest_write(&c);
        REQUIRE(path);
        char saved[] = "/tmp/ember-test-initramfs-XXXXXX";
        temp_file(saved);
        CHECK_EQ(run_with_path_option(path, ember_builder_kernel_save_initramfs, saved), 7);

        static uint8_t buf[4 << 20];
        int fd = open(saved, O_RDONLY);
        REQUIRE(fd >= 0);
        ssize_t n = read(fd, buf, sizeof(buf));
        close(fd);
        REQUIRE(n > 0 && (size_t)n < sizeof(buf));
        CHECK_EQ(n % 4, 0);
        static const char *const names[] = {".ember/init", ".ember/config"};
        CHECK_EQ(cpio_find(buf, (size_t)n, names, 2), 2);
        unlink(saved);

        struct ember_builder *b = tiny_builder(path, 1);
        REQUIRE_EQ(ember_builder_kernel_save_initramfs(b, "/nonexistent-dir/initramfs"), 0);
        struct ember_vm *vm = NULL;
        CHECK(ember_builder_build(b, &vm) < 0);
        CHECK(strstr(ember_builder_error(b), "save initramfs '/nonexistent-dir/initramfs'") !=
              NULL);
        ember_builder_free(b);
        unlink(path);
        free(path);
}

int main(void)
{
        T_RUN(t_status_port_exit_code);
        T_RUN(t_crash_without_status_is_guest_failure);
        T_RUN(t_i8042_reset_stops_vm);
        T_RUN(t_serial_kernel_log);
        T_RUN(t_unclaimed_io_reads_all_ones);
        T_RUN(t_status_port_reads_magic);
        T_RUN(t_exit_handle_stops_spinning_guest);
        T_RUN(t_released_handle_never_writes_elsewhere);
        T_RUN(t_run_on_started_vm_keeps_it);
        T_RUN(t_metrics_count_exits);
        T_RUN(t_metrics_while_running);
        T_RUN(t_observers_run_in_order_after_code_set);
        T_RUN(t_concurrent_vms);
        T_RUN(t_many_vms_no_fd_leak);
        T_RUN(t_save_initramfs);
        T_RUN(t_big_kernel_copied_while_building);
        T_RUN(t_kernel_larger_than_memory);
        T_RUN(t_coalesced_ioapic_select_replayed_in_order);
        T_RUN(t_enter_exits_process_with_code);
        return T_DONE();
}
