/* Looks for a key by description in the session keyring, and prints that keyring's id:
 *   keyring_probe DESCRIPTION  ->  "session ID" and "found ID" or "missing ERRNO" */
#include <errno.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/syscall.h>

#define KEYCTL_GET_KEYRING_ID 0
#define KEYCTL_SEARCH 10
#define KEY_SPEC_SESSION_KEYRING -3

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    long session = syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0);
    printf("session %ld\n", session);
    long found = syscall(SYS_keyctl, KEYCTL_SEARCH, KEY_SPEC_SESSION_KEYRING, "user", argv[1], 0);
    if (found >= 0) printf("found %ld\n", found);
    else printf("missing %d\n", errno);
    return 0;
}
