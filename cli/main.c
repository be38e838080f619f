/* The `ember` command: dispatches subcommands. The only place in ember that calls exit(). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "ember/ember.h"

static void usage(FILE *f)
{
        fprintf(
            f,
            "usage: ember <command> [options]\n"
            "\n"
            "Boots a minimal Linux microVM on KVM, runs one command in it, and returns its\n"
            "exit status.\n"
            "\n"
            "commands:\n"
            "  run [options] -- CMD [ARGS...]   run CMD in a new microVM (see ember run --help)\n"
            "  kvm-info                         what this host's KVM offers and what ember needs\n"
            "\n"
            "options:\n"
            "  -h, --help                       this help\n"
            "  -V, --version                    print the version\n");
}

int main(int argc, char **argv)
{
        if (argc < 2) {
                usage(stderr);
                exit(2);
        }
        const char *cmd = argv[1];
        if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
                usage(stdout);
                exit(0);
        }
        if (!strcmp(cmd, "-V") || !strcmp(cmd, "--version")) {
                printf("ember %s\n", ember_version());
                exit(0);
        }
        if (!strcmp(cmd, "run"))
                exit(ember_cli_run(argc - 1, argv + 1));
        if (!strcmp(cmd, "kvm-info"))
                exit(ember_cli_kvm_info(argc - 1, argv + 1));
        fprintf(stderr, "ember: unknown command '%s' (try ember --help)\n", cmd);
        exit(2);
}
