#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "core/hostfd.h"
#include "dev/legacy.h"

#define SERIAL_BUF_SIZE (256u * 1024u)

/* Register offsets and bits of the 16550 that the Linux 8250 driver touches. */
enum {
        UART_RBR_THR = 0,
        UART_IER = 1,
        UART_IIR_FCR = 2,
        UART_LCR = 3,
        UART_MCR = 4,
        UART_LSR = 5,
        UART_MSR = 6,
        UART_SCR = 7
};
#define UART_LCR_DLAB        0x80
#define UART_IER_THRI        0x02
#define UART_IIR_NO_INT      0x01
#define UART_IIR_THRI        0x02
#define UART_IIR_FIFO_BITS   0xc0
#define UART_LSR_THRE        0x20
#define UART_LSR_TEMT        0x40
#define UART_MCR_LOOP        0x10
#define UART_MSR_DCD_DSR_CTS 0xb0

static void serial_update_irq(struct serial16550 *s)
{
        int level = (s->ier & UART_IER_THRI) && s->thre_pending;
        if (level != s->irq_level && s->env->irq_line) {
                s->env->irq_line(s->env->hv, s->gsi, level);
                s->irq_level = level;
        }
}

static void serial_emit(struct serial16550 *s, uint8_t c)
{
        /* The vCPU only copies into the writer's buffer: a slow or stuck log sink never stalls
         * it. The kernel log is best effort: what does not fit is dropped (and counted). */
        if (s->w && hostfd_writer_put(s->w, &c, 1) == 0)
                s->dropped++;
}

static void serial_write(void *opaque, uint64_t off, const uint8_t *data, uint32_t len)
{
        struct serial16550 *s = opaque;
        uint8_t v = data[0];
        pthread_mutex_lock(&s->lock);
        switch (off) {
        case UART_RBR_THR:
                if (s->lcr & UART_LCR_DLAB) {
                        s->dll = v;
                } else {
                        if (!(s->mcr & UART_MCR_LOOP))
                                serial_emit(s, v);
                        s->thre_pending = 1; /* transmit is instantaneous */
                }
                break;
        case UART_IER:
                if (s->lcr & UART_LCR_DLAB) {
                        s->dlm = v;
                } else {
                        /* Enabling THRI with an empty transmitter raises it at once, as on
                         * hardware. */
                        if (!(s->ier & UART_IER_THRI) && (v & UART_IER_THRI))
                                s->thre_pending = 1;
                        s->ier = v & 0x0f;
                }
                break;
        case UART_LCR:
                s->lcr = v;
                break;
        case UART_MCR:
                s->mcr = v & 0x1f;
                break;
        case UART_SCR:
                s->scr = v;
                break;
        default: /* FCR, LSR, MSR writes: nothing to model */
                break;
        }
        serial_update_irq(s);
        pthread_mutex_unlock(&s->lock);
}

static void serial_read(void *opaque, uint64_t off, uint8_t *data, uint32_t len)
{
        struct serial16550 *s = opaque;
        uint8_t v = 0;
        pthread_mutex_lock(&s->lock);
        switch (off) {
        case UART_RBR_THR:
                v = (s->lcr & UART_LCR_DLAB) ? s->dll : 0;
                break;
        case UART_IER:
                v = (s->lcr & UART_LCR_DLAB) ? s->dlm : s->ier;
                break;
        case UART_IIR_FCR:
                if ((s->ier & UART_IER_THRI) && s->thre_pending) {
                        v = UART_IIR_THRI | UART_IIR_FIFO_BITS;
                        s->thre_pending = 0; /* reading IIR acknowledges THRI */
                } else {
                        v = UART_IIR_NO_INT | UART_IIR_FIFO_BITS;
                }
                break;
        case UART_LCR:
                v = s->lcr;
                break;
        case UART_MCR:
                v = s->mcr;
                break;
        case UART_LSR:
                v = UART_LSR_THRE | UART_LSR_TEMT;
                break;
        case UART_MSR:
                v = UART_MSR_DCD_DSR_CTS;
                break;
        case UART_SCR:
                v = s->scr;
                break;
        }
        serial_update_irq(s);
        pthread_mutex_unlock(&s->lock);
        memset(data, 0, len);
        data[0] = v;
}

static const struct bus_dev_ops serial_ops = {.read = serial_read, .write = serial_write};

int serial16550_init(struct serial16550 *s, const struct dev_env *env, uint16_t port, uint32_t gsi,
                     int out_fd)
{
        memset(s, 0, sizeof(*s));
        s->env = env;
        s->gsi = gsi;
        int rc =
            out_fd >= 0 ? hostfd_writer_create(out_fd, SERIAL_BUF_SIZE, "ember-klog", &s->w) : 0;
        if (rc)
                return rc;
        rc = pthread_mutex_init(&s->lock, NULL);
        if (rc) {
                hostfd_writer_destroy(s->w);
                return -rc;
        }
        rc = bus_add(env->pio, port, 8, &serial_ops, s, "serial16550");
        if (rc) {
                pthread_mutex_destroy(&s->lock);
                hostfd_writer_destroy(s->w);
        }
        return rc;
}

uint64_t serial16550_flush(struct serial16550 *s, const struct timespec *deadline, int cancel_fd)
{
        if (!s->w)
                return 0;
        hostfd_writer_drain(s->w, deadline, cancel_fd);
        struct hostfd_writer_stats st;
        hostfd_writer_get_stats(s->w, &st);
        return st.dropped + s->dropped;
}

void serial16550_destroy(struct serial16550 *s)
{
        hostfd_writer_destroy(s->w);
        s->w = NULL;
        pthread_mutex_destroy(&s->lock);
}
