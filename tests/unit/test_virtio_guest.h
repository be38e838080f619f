/* A fake VM and a fake virtio driver for the virtio unit tests: real guest RAM (gmem_init), an
 * MMIO bus and event loop, hooks that record what the transport asks of KVM, and a small split
 * ring driver that lays out rings in guest RAM and talks to the device through the bus exactly
 * as a vCPU would. Include once per program (the unit tests and fuzz/fuzz_virtio_console.c). */
#ifndef EMBER_TEST_VIRTIO_GUEST_H
#define EMBER_TEST_VIRTIO_GUEST_H

#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/bus.h"
#include "core/dev_env.h"
#include "core/evloop.h"
#include "core/gmem.h"
#include "virtio/mmio.h"
#include "virtio/virtq.h"

/* Not every test program uses every helper. */
#define FAKE_HELPER static __attribute__((unused))

#define FAKE_RAM      (16ull << 20)
#define FAKE_MAX_IOEV 64

struct fake_ioev {
        int fd;
        uint64_t addr;
        uint32_t len;
        uint64_t match;
        bool active;
};

/* KVM's coalesced MMIO, emulated: writes wholly inside a zone wait in a ring, and every other
 * access (as every exit does in ember) first replays them in order. */
#define FAKE_MAX_ZONES 8
#define FAKE_RING      64

struct fake_pending {
        uint64_t addr;
        uint32_t len;
        uint8_t data[8];
};

struct fake_vm {
        struct gmem mem;
        struct bus mmio, pio;
        struct evloop loop;
        struct dev_env env;
        struct fake_ioev ioev[FAKE_MAX_IOEV];
        unsigned ioev_assigns, ioev_deassigns;
        bool ioeventfd_fails;
        int irq_fd;
        uint32_t irq_gsi;
        bool irqfd_fails;
        int line_level;
        unsigned line_raises; /* interrupts delivered through irq_line */
        struct {
                uint64_t addr;
                uint32_t len;
        } zone[FAKE_MAX_ZONES];
        unsigned nzones;
        bool coalesce_fails;
        struct fake_pending pending[FAKE_RING];
        unsigned npending;
        unsigned coalesced; /* writes that went through the ring */
        int stops;
        enum vm_stop_reason stop_reason;
        char stop_why[256];
        uint64_t next_free; /* bump allocator over guest RAM */
};

FAKE_HELPER int fake_ioeventfd(void *hv, int fd, uint64_t addr, uint32_t len, bool has_match,
                               uint64_t match, bool assign)
{
        struct fake_vm *vm = hv;
        if (assign) {
                if (vm->ioeventfd_fails)
                        return -ENOSYS;
                for (unsigned i = 0; i < FAKE_MAX_IOEV; i++) {
                        struct fake_ioev *e = &vm->ioev[i];
                        if (e->active && e->addr == addr && e->match == match)
                                return -EEXIST; /* as KVM does for a duplicate */
                }
                for (unsigned i = 0; i < FAKE_MAX_IOEV; i++) {
                        if (!vm->ioev[i].active) {
                                vm->ioev[i] = (struct fake_ioev){fd, addr, len, match, true};
                                vm->ioev_assigns++;
                                return 0;
                        }
                }
                return -ENOSPC;
        }
        for (unsigned i = 0; i < FAKE_MAX_IOEV; i++) {
                struct fake_ioev *e = &vm->ioev[i];
                if (e->active && e->fd == fd && e->addr == addr && e->match == match) {
                        e->active = false;
                        vm->ioev_deassigns++;
                        return 0;
                }
        }
        return -ENOENT;
}

FAKE_HELPER unsigned fake_active_ioev(const struct fake_vm *vm)
{
        unsigned n = 0;
        for (unsigned i = 0; i < FAKE_MAX_IOEV; i++)
                n += vm->ioev[i].active;
        return n;
}

FAKE_HELPER int fake_irqfd(void *hv, int fd, uint32_t gsi, bool assign)
{
        struct fake_vm *vm = hv;
        if (assign && vm->irqfd_fails)
                return -ENOSYS;
        vm->irq_fd = assign ? fd : -1;
        vm->irq_gsi = gsi;
        return 0;
}

/* KVM_IRQ_LINE as ember's routing makes it behave: every pin is an edge MSI route, so each
 * call with level 1 delivers one interrupt, whatever the line's previous level, and level 0
 * delivers nothing (an interrupt raised while the line is "high" is not held back). */
FAKE_HELPER int fake_irq_line(void *hv, uint32_t gsi, int level)
{
        struct fake_vm *vm = hv;
        if (level)
                vm->line_raises++;
        vm->line_level = level;
        return 0;
}

FAKE_HELPER int fake_coalesce(void *hv, uint64_t addr, uint32_t len)
{
        struct fake_vm *vm = hv;
        if (vm->coalesce_fails)
                return -ENOSYS;
        if (vm->nzones == FAKE_MAX_ZONES)
                return -ENOSPC;
        vm->zone[vm->nzones].addr = addr;
        vm->zone[vm->nzones].len = len;
        vm->nzones++;
        return 0;
}

FAKE_HELPER void fake_stop(void *hv, enum vm_stop_reason reason, int code, const char *why)
{
        struct fake_vm *vm = hv;
        if (vm->stops++ == 0) {
                vm->stop_reason = reason;
                snprintf(vm->stop_why, sizeof(vm->stop_why), "%s", why ? why : "");
        }
}

/* A device as the VM makes it: its virtio core (ops, dev), then a virtio-mmio transport at
 * `base`. On failure nothing is left (ops->destroy, if any, has run). */
FAKE_HELPER int fake_virtio_create(const struct dev_env *env, uint64_t base, uint32_t gsi,
                                   const struct virtio_dev_ops *ops, void *dev,
                                   struct virtio_dev **vd, struct virtio_mmio **t, char *err,
                                   size_t errlen)
{
        *t = NULL;
        int r = virtio_dev_create(env, ops, dev, vd, err, errlen);
        if (r < 0)
                return r;
        r = virtio_mmio_create(env, base, gsi, *vd, t, err, errlen);
        if (r < 0) {
                virtio_dev_destroy(*vd);
                *vd = NULL;
        }
        return r;
}

/* Returns 0 or -errno. */
FAKE_HELPER int fake_vm_init(struct fake_vm *vm)
{
        memset(vm, 0, sizeof(*vm));
        int r = gmem_init(&vm->mem, FAKE_RAM, 3ull << 30);
        if (r < 0)
                return r;
        bus_init(&vm->mmio);
        bus_init(&vm->pio);
        r = evloop_init(&vm->loop);
        if (r < 0)
                return r;
        vm->irq_fd = -1;
        vm->next_free = 0x10000;
        vm->env = (struct dev_env){
            .mem = &vm->mem,
            .loop = &vm->loop,
            .pio = &vm->pio,
            .mmio = &vm->mmio,
            .hv = vm,
            .ioeventfd = fake_ioeventfd,
            .irqfd = fake_irqfd,
            .irq_line = fake_irq_line,
            .coalesce_writes = fake_coalesce,
            .stop = fake_stop,
        };
        return 0;
}

FAKE_HELPER void fake_vm_destroy(struct fake_vm *vm)
{
        evloop_destroy(&vm->loop);
        gmem_destroy(&vm->mem);
}

FAKE_HELPER uint64_t guest_alloc(struct fake_vm *vm, uint64_t len, uint64_t align)
{
        uint64_t p = (vm->next_free + align - 1) & ~(align - 1);
        vm->next_free = p + len;
        return p;
}

FAKE_HELPER void *guest_ptr(struct fake_vm *vm, uint64_t gpa, uint64_t len)
{
        return gmem_ptr(&vm->mem, gpa, len);
}

/* ---- register access, as a vCPU's MMIO exit */

/* Replays the coalesced writes, oldest first. */
FAKE_HELPER void fake_flush(struct fake_vm *vm)
{
        for (unsigned i = 0; i < vm->npending; i++) {
                struct fake_pending *p = &vm->pending[i];
                bus_dispatch(&vm->mmio, p->addr, p->data, p->len, true);
        }
        vm->npending = 0;
}

/* One guest MMIO access as KVM and ember handle it (see FAKE_RING). */
FAKE_HELPER bool fake_mmio(struct fake_vm *vm, uint64_t addr, uint8_t *data, uint32_t len,
                           bool is_write)
{
        if (is_write && len <= 8 && vm->npending < FAKE_RING) {
                for (unsigned z = 0; z < vm->nzones; z++) {
                        if (addr >= vm->zone[z].addr && len <= vm->zone[z].len &&
                            addr - vm->zone[z].addr <= vm->zone[z].len - len) {
                                struct fake_pending *p = &vm->pending[vm->npending++];
                                p->addr = addr;
                                p->len = len;
                                memcpy(p->data, data, len);
                                vm->coalesced++;
                                return true;
                        }
                }
        }
        fake_flush(vm);
        return bus_dispatch(&vm->mmio, addr, data, len, is_write);
}

FAKE_HELPER uint32_t mmio_r32(struct fake_vm *vm, uint64_t addr)
{
        uint8_t d[4];
        fake_mmio(vm, addr, d, 4, false);
        uint32_t v;
        memcpy(&v, d, 4);
        return v;
}

FAKE_HELPER void mmio_w32(struct fake_vm *vm, uint64_t addr, uint32_t v)
{
        uint8_t d[4];
        memcpy(d, &v, 4);
        fake_mmio(vm, addr, d, 4, true);
}

/* Runs the event loop until it has been idle for `idle_ms`. Returns callbacks run. */
FAKE_HELPER int fake_run(struct fake_vm *vm, int idle_ms)
{
        int total = 0, n;
        while ((n = evloop_run_once(&vm->loop, idle_ms)) > 0)
                total += n;
        return total;
}

/* Whether an interrupt was raised through the irqfd since the last call. */
FAKE_HELPER bool fake_irq_taken(struct fake_vm *vm)
{
        if (vm->irq_fd < 0)
                return false;
        uint64_t v;
        return read(vm->irq_fd, &v, sizeof(v)) == sizeof(v) && v > 0;
}

/* ---- a split ring driver */

struct gq {
        struct fake_vm *vm;
        uint64_t base;
        unsigned index;
        uint16_t size;
        uint64_t desc, avail, used;
        uint16_t avail_idx, last_used;
        uint16_t next_desc; /* descriptors handed out round-robin */
        uint16_t in_flight;
};

struct gseg {
        uint64_t gpa;
        uint32_t len;
        bool writable;
};

FAKE_HELPER uint8_t *gq_desc(struct gq *q, unsigned i)
{
        return guest_ptr(q->vm, q->desc + 16ull * i, 16);
}

FAKE_HELPER void gq_write_desc(struct gq *q, unsigned i, uint64_t addr, uint32_t len,
                               uint16_t flags, uint16_t next)
{
        uint8_t *d = gq_desc(q, i);
        memcpy(d, &addr, 8);
        memcpy(d + 8, &len, 4);
        memcpy(d + 12, &flags, 2);
        memcpy(d + 14, &next, 2);
}

FAKE_HELPER void gq_set_avail_flags(struct gq *q, uint16_t flags)
{
        memcpy(guest_ptr(q->vm, q->avail, 2), &flags, 2);
}

/* Puts head `head` in the avail ring and publishes it. */
FAKE_HELPER void gq_publish(struct gq *q, uint16_t head)
{
        uint8_t *a = guest_ptr(q->vm, q->avail, VIRTQ_AVAIL_BYTES(q->size));
        memcpy(a + 4 + 2u * (q->avail_idx % q->size), &head, 2);
        q->avail_idx++;
        __atomic_store_n((uint16_t *)(a + 2), q->avail_idx, __ATOMIC_RELEASE);
}

/* Sets the avail index to anything (for hostile tests). */
FAKE_HELPER void gq_set_avail_idx(struct gq *q, uint16_t idx)
{
        uint8_t *a = guest_ptr(q->vm, q->avail, 4);
        q->avail_idx = idx;
        __atomic_store_n((uint16_t *)(a + 2), idx, __ATOMIC_RELEASE);
}

/* Adds a chain of direct descriptors; returns the head. */
FAKE_HELPER uint16_t gq_add(struct gq *q, const struct gseg *s, unsigned n)
{
        uint16_t head = q->next_desc;
        for (unsigned i = 0; i < n; i++) {
                uint16_t d = (uint16_t)((head + i) % q->size);
                uint16_t next = (uint16_t)((d + 1) % q->size);
                uint16_t flags =
                    (s[i].writable ? VIRTQ_DESC_F_WRITE : 0) | (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0);
                gq_write_desc(q, d, s[i].gpa, s[i].len, flags, next);
        }
        q->next_desc = (uint16_t)((head + n) % q->size);
        q->in_flight++;
        gq_publish(q, head);
        return head;
}

/* Adds one buffer as a chain through an indirect table of `n` entries. */
FAKE_HELPER uint16_t gq_add_indirect(struct gq *q, const struct gseg *s, unsigned n)
{
        uint64_t table = guest_alloc(q->vm, 16ull * n, 16);
        uint8_t *t = guest_ptr(q->vm, table, 16ull * n);
        for (unsigned i = 0; i < n; i++) {
                uint16_t flags =
                    (s[i].writable ? VIRTQ_DESC_F_WRITE : 0) | (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0);
                uint16_t next = (uint16_t)(i + 1);
                memcpy(t + 16 * i, &s[i].gpa, 8);
                memcpy(t + 16 * i + 8, &s[i].len, 4);
                memcpy(t + 16 * i + 12, &flags, 2);
                memcpy(t + 16 * i + 14, &next, 2);
        }
        uint16_t head = q->next_desc;
        gq_write_desc(q, head, table, 16u * n, VIRTQ_DESC_F_INDIRECT, 0);
        q->next_desc = (uint16_t)((head + 1) % q->size);
        q->in_flight++;
        gq_publish(q, head);
        return head;
}

/* Takes the next used element: 1 with id/len, or 0. */
FAKE_HELPER int gq_used(struct gq *q, uint32_t *id, uint32_t *len)
{
        uint8_t *u = guest_ptr(q->vm, q->used, VIRTQ_USED_BYTES(q->size));
        uint16_t idx = __atomic_load_n((uint16_t *)(u + 2), __ATOMIC_ACQUIRE);
        if (idx == q->last_used)
                return 0;
        uint8_t *e = u + 4 + 8u * (q->last_used % q->size);
        memcpy(id, e, 4);
        memcpy(len, e + 4, 4);
        q->last_used++;
        q->in_flight--;
        return 1;
}

/* Notifies queue `index` as Linux does (a 4-byte write of the index at QueueNotify). With an
 * ioeventfd in place that write never exits: KVM signals the eventfd itself. */
FAKE_HELPER void gq_kick_index(struct fake_vm *vm, uint64_t base, unsigned index)
{
        for (unsigned i = 0; i < FAKE_MAX_IOEV; i++) {
                struct fake_ioev *e = &vm->ioev[i];
                if (e->active && e->addr == base + VIRTIO_MMIO_QUEUE_NOTIFY && e->len == 4 &&
                    e->match == index) {
                        uint64_t one = 1;
                        if (write(e->fd, &one, 8) != 8)
                                return;
                        return;
                }
        }
        mmio_w32(vm, base + VIRTIO_MMIO_QUEUE_NOTIFY, index);
}

FAKE_HELPER void gq_kick(struct gq *q)
{
        gq_kick_index(q->vm, q->base, q->index);
}

/* The device's VIRTQ_USED_F_NO_NOTIFY hint for this queue. */
FAKE_HELPER bool gq_notify_suppressed(struct gq *q)
{
        uint16_t flags;
        memcpy(&flags, guest_ptr(q->vm, q->used, 2), 2);
        return flags & VIRTQ_USED_F_NO_NOTIFY;
}

/* Notifies only if the device has not asked otherwise, as Linux does without EVENT_IDX (the
 * driver's avail->idx store is ordered before this read). Returns whether it notified. */
FAKE_HELPER bool gq_kick_if_wanted(struct gq *q)
{
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        if (gq_notify_suppressed(q))
                return false;
        gq_kick(q);
        return true;
}

/* Feature negotiation: reset, ACK, DRIVER, features, FEATURES_OK. Returns the status read back. */
FAKE_HELPER uint32_t guest_negotiate(struct fake_vm *vm, uint64_t base, uint64_t features)
{
        mmio_w32(vm, base + VIRTIO_MMIO_STATUS, 0);
        mmio_w32(vm, base + VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
        mmio_w32(vm, base + VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
        mmio_w32(vm, base + VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
        mmio_w32(vm, base + VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)features);
        mmio_w32(vm, base + VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
        mmio_w32(vm, base + VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(features >> 32));
        mmio_w32(vm, base + VIRTIO_MMIO_STATUS,
                 VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
        return mmio_r32(vm, base + VIRTIO_MMIO_STATUS);
}

FAKE_HELPER void guest_driver_ok(struct fake_vm *vm, uint64_t base)
{
        mmio_w32(vm, base + VIRTIO_MMIO_STATUS,
                 VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
                     VIRTIO_STATUS_DRIVER_OK);
}

/* QueueNumMax of queue `index`, as a driver reads it before choosing the queue's size. */
FAKE_HELPER uint32_t guest_queue_num_max(struct fake_vm *vm, uint64_t base, unsigned index)
{
        mmio_w32(vm, base + VIRTIO_MMIO_QUEUE_SEL, index);
        return mmio_r32(vm, base + VIRTIO_MMIO_QUEUE_NUM_MAX);
}

FAKE_HELPER void guest_set_queue_regs(struct fake_vm *vm, uint64_t base, unsigned index,
                                      uint32_t num, uint64_t desc, uint64_t avail, uint64_t used)
{
        mmio_w32(vm, base + VIRTIO_MMIO_QUEUE_SEL, index);
        mmio_w32(vm, base + VIRTIO_MMIO_QUEUE_NUM, num);
        mmio_w32(vm, base + VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)desc);
        mmio_w32(vm, base + VIRTIO_MMIO_QUEUE_DESC_HIGH, (uint32_t)(desc >> 32));
        mmio_w32(vm, base + VIRTIO_MMIO_QUEUE_DRIVER_LOW, (uint32_t)avail);
        mmio_w32(vm, base + VIRTIO_MMIO_QUEUE_DRIVER_HIGH, (uint32_t)(avail >> 32));
        mmio_w32(vm, base + VIRTIO_MMIO_QUEUE_DEVICE_LOW, (uint32_t)used);
        mmio_w32(vm, base + VIRTIO_MMIO_QUEUE_DEVICE_HIGH, (uint32_t)(used >> 32));
}

/* Lays out and enables queue `index` with `size` entries. Returns QueueReady read back. */
FAKE_HELPER uint32_t gq_setup(struct gq *q, struct fake_vm *vm, uint64_t base, unsigned index,
                              uint16_t size)
{
        memset(q, 0, sizeof(*q));
        q->vm = vm;
        q->base = base;
        q->index = index;
        q->size = size;
        q->desc = guest_alloc(vm, VIRTQ_DESC_BYTES(size), 4096);
        q->avail = guest_alloc(vm, VIRTQ_AVAIL_BYTES(size), 4096);
        q->used = guest_alloc(vm, VIRTQ_USED_BYTES(size), 4096);
        /* as a driver does: rings start zeroed */
        memset(guest_ptr(vm, q->desc, VIRTQ_DESC_BYTES(size)), 0, VIRTQ_DESC_BYTES(size));
        memset(guest_ptr(vm, q->avail, VIRTQ_AVAIL_BYTES(size)), 0, VIRTQ_AVAIL_BYTES(size));
        memset(guest_ptr(vm, q->used, VIRTQ_USED_BYTES(size)), 0, VIRTQ_USED_BYTES(size));
        guest_set_queue_regs(vm, base, index, size, q->desc, q->avail, q->used);
        mmio_w32(vm, base + VIRTIO_MMIO_QUEUE_READY, 1);
        return mmio_r32(vm, base + VIRTIO_MMIO_QUEUE_READY);
}

/* ---- hostile guests on real threads */

/* The VM's event thread, for tests: services vm->loop until a stop request arrives through an
 * eventfd in the loop, as ember's exit socket does, and checks `stop` between turns only. A
 * callback that never returns keeps it from ever seeing the request. */
struct fake_events {
        struct fake_vm *vm;
        pthread_t thread;
        int stop_fd;
        atomic_bool stop;
};

FAKE_HELPER void fake_events_on_stop(void *opaque, uint32_t events)
{
        struct fake_events *e = opaque;
        uint64_t v;
        if (read(e->stop_fd, &v, sizeof(v)) < 0) {
        }
        atomic_store(&e->stop, true);
}

FAKE_HELPER void *fake_events_main(void *arg)
{
        struct fake_events *e = arg;
        while (!atomic_load(&e->stop))
                evloop_run_once(&e->vm->loop, -1);
        return NULL;
}

FAKE_HELPER int fake_events_start(struct fake_vm *vm, struct fake_events *e)
{
        memset(e, 0, sizeof(*e));
        e->vm = vm;
        e->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (e->stop_fd < 0 || evloop_add(&vm->loop, e->stop_fd, EPOLLIN, fake_events_on_stop, e))
                return -1;
        return -pthread_create(&e->thread, NULL, fake_events_main, e);
}

/* Asks the thread to stop and waits up to timeout_ms. True if it stopped (then *took_ms says
 * how long that took); false if it is still stuck, which a test reports as a failure (the
 * thread is then left running: the test program should end soon). */
FAKE_HELPER bool fake_events_stop(struct fake_events *e, int timeout_ms, double *took_ms)
{
        struct timespec t0, t1, until;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        uint64_t one = 1;
        if (write(e->stop_fd, &one, sizeof(one)) < 0)
                return false;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += timeout_ms / 1000;
        until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
        }
        if (pthread_timedjoin_np(e->thread, NULL, &until) != 0)
                return false;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (took_ms)
                *took_ms =
                    (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
        evloop_del(&e->vm->loop, e->stop_fd);
        close(e->stop_fd);
        return true;
}

/* A guest on a thread of its own that keeps queue q's avail ring full of the same head (a
 * chain it wrote beforehand), re-adding it as soon as the device uses it and never notifying
 * again: an unbounded device loop never ends, however long the ring is. */
struct fake_hammer {
        struct gq *q;
        uint16_t head;
        pthread_t thread;
        atomic_bool stop;
        atomic_bool full; /* the ring was full once */
        atomic_uint_fast64_t published;
};

FAKE_HELPER void *fake_hammer_main(void *arg)
{
        struct fake_hammer *h = arg;
        struct gq *q = h->q;
        uint8_t *a = guest_ptr(q->vm, q->avail, VIRTQ_AVAIL_BYTES(q->size));
        uint8_t *u = guest_ptr(q->vm, q->used, VIRTQ_USED_BYTES(q->size));
        while (!atomic_load(&h->stop)) {
                uint16_t used = __atomic_load_n((uint16_t *)(u + 2), __ATOMIC_ACQUIRE);
                if ((uint16_t)(q->avail_idx - used) >= q->size) {
                        /* Spin, as a vCPU would: the point is to refill while the device's
                         * loop is still running. */
                        atomic_store(&h->full, true);
                        __builtin_ia32_pause();
                        continue;
                }
                memcpy(a + 4 + 2u * (q->avail_idx % q->size), &h->head, 2);
                q->avail_idx++;
                __atomic_store_n((uint16_t *)(a + 2), q->avail_idx, __ATOMIC_RELEASE);
                atomic_fetch_add(&h->published, 1);
        }
        return NULL;
}

/* Starts hammering with `head` and sends the one notification the device ever gets. */
FAKE_HELPER int fake_hammer_start(struct fake_hammer *h, struct gq *q, uint16_t head)
{
        memset(h, 0, sizeof(*h));
        h->q = q;
        h->head = head;
        int r = pthread_create(&h->thread, NULL, fake_hammer_main, h);
        if (r)
                return -r;
        /* The ring full before the one kick: the device starts with work in hand. */
        while (!atomic_load(&h->full))
                sched_yield();
        gq_kick(q);
        return 0;
}

FAKE_HELPER uint64_t fake_hammer_stop(struct fake_hammer *h)
{
        atomic_store(&h->stop, true);
        pthread_join(h->thread, NULL);
        return atomic_load(&h->published);
}

/* With a hammer on queue q (re-adding `head`), turns the event loop one turn at a time for
 * `ms` milliseconds and measures the most chains the device used in one turn (*most). Returns
 * the chains used in all. A device whose loops are bounded does at most one budget
 * (VIRTIO_BUDGET_CHAINS) per turn; with a ring larger than that, a full ring shows it. */
FAKE_HELPER uint64_t fake_budget_per_turn(struct fake_vm *vm, struct gq *q, uint16_t head,
                                          unsigned ms, unsigned *most)
{
        struct fake_hammer h;
        *most = 0;
        if (fake_hammer_start(&h, q, head) != 0)
                return 0;
        const uint8_t *u = guest_ptr(vm, q->used, 4);
        uint16_t last = __atomic_load_n((const uint16_t *)(u + 2), __ATOMIC_ACQUIRE);
        uint64_t total = 0;
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += ms / 1000;
        until.tv_nsec += (long)(ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
        }
        for (;;) {
                struct timespec now_ts;
                clock_gettime(CLOCK_MONOTONIC, &now_ts);
                if (now_ts.tv_sec > until.tv_sec ||
                    (now_ts.tv_sec == until.tv_sec && now_ts.tv_nsec >= until.tv_nsec))
                        break;
                evloop_run_once(&vm->loop, 10);
                uint16_t now = __atomic_load_n((const uint16_t *)(u + 2), __ATOMIC_ACQUIRE);
                unsigned did = (uint16_t)(now - last);
                *most = did > *most ? did : *most;
                total += did;
                last = now;
        }
        fake_hammer_stop(&h);
        return total;
}

/* Writes one descriptor at index `d` (not published). */
FAKE_HELPER void gq_put_desc(struct gq *q, uint16_t d, uint64_t gpa, uint32_t len, bool writable)
{
        gq_write_desc(q, d, gpa, len, writable ? VIRTQ_DESC_F_WRITE : 0, 0);
}

#endif
