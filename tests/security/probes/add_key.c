/* Host side of the keyring test: a new session keyring holding one user key, then exec the rest
 * of argv in it (as an administrator's login session would hold keys):
 *   add_key DESCRIPTION COMMAND [ARG...] */
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>

#define KEYCTL_JOIN_SESSION_KEYRING 1
#define KEY_SPEC_SESSION_KEYRING -3

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    if (syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, NULL) < 0) { perror("join"); return 1; }
    const char *secret = "host secret";
    if (syscall(SYS_add_key, "user", argv[1], secret, strlen(secret), KEY_SPEC_SESSION_KEYRING) < 0) {
        perror("add_key");
        return 1;
    }
    execvp(argv[2], argv + 2);
    perror("exec");
    return 127;
}
