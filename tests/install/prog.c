/* Built by tests/install/run.sh with `pkg-config --cflags --libs ember` against an installed
 * tree: gives no kernel and no root, so the library's defaults (the installed guest) apply. */
#include <ember/ember.h>
#include <stdio.h>

int main(void)
{
        const char *argv[] = {"/bin/sh", "-c", "echo from the installed library; exit 7", NULL};
        struct ember_builder *b = ember_builder_new();
        struct ember_vm *vm = NULL;
        if (!b || ember_builder_machine(b, 1, 128) || ember_builder_exec(b, argv[0], argv) ||
            ember_builder_build(b, &vm)) {
                fprintf(stderr, "prog: %s\n", b ? ember_builder_error(b) : "out of memory");
                return 1;
        }
        ember_builder_free(b);
        fflush(stdout);
        int code = ember_vm_run(vm);
        printf("prog: exit %d\n", code);
        return code == 7 ? 0 : 1;
}
