#include <string.h>

#include "arch/x86_64/layout.h"
#include "dev/legacy.h"

#define I8042_CMD_RESET 0xfe

static void i8042_read(void *opaque, uint64_t off, uint8_t *data, uint32_t len)
{
        /* Status 0: output buffer empty, input buffer empty, so the kernel never waits on us. */
        memset(data, 0, len);
}

static void i8042_cmd_write(void *opaque, uint64_t off, const uint8_t *data, uint32_t len)
{
        struct i8042 *k = opaque;
        if (data[0] == I8042_CMD_RESET)
                k->env->stop(k->env->hv, VM_STOP_GUEST_RESET, 0, "guest reset through the i8042");
}

static void i8042_data_write(void *opaque, uint64_t off, const uint8_t *data, uint32_t len)
{
}

static const struct bus_dev_ops i8042_data_ops = {.read = i8042_read, .write = i8042_data_write};
static const struct bus_dev_ops i8042_cmd_ops = {.read = i8042_read, .write = i8042_cmd_write};

int i8042_init(struct i8042 *k, const struct dev_env *env)
{
        k->env = env;
        int rc = bus_add(env->pio, X86_I8042_DATA, 1, &i8042_data_ops, k, "i8042-data");
        if (rc)
                return rc;
        return bus_add(env->pio, X86_I8042_CMD, 1, &i8042_cmd_ops, k, "i8042-cmd");
}
