/* Subcommands of the `ember` CLI. Each parses its own argv (argv[0] is the subcommand name)
 * and returns the process exit status; only cli/main.c calls exit(). */
#ifndef EMBER_CLI_H
#define EMBER_CLI_H

int ember_cli_run(int argc, char **argv);
int ember_cli_kvm_info(int argc, char **argv);

#endif
